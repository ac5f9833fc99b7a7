// Loading tokenizers: tokenizer.json (+ tokenizer_config.json) and GPT-2 style
// vocab.json + merges.txt. Each section of tokenizer.json maps to a part of
// Tokenizer::Impl; anything we do not implement is an InputError naming it.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/pretokenize.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_impl.hpp"
#include "io/unicode.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json parse_json(const fs::path& path) {
  return parse_json_strict_sorted(read_text_file(path), path.string());
}

std::string type_of(const json& j) {
  return j.is_object() ? j.value("type", std::string("(no type)")) : j.dump();
}

using Vocab = std::unordered_map<std::string, std::int32_t>;

Vocab parse_vocab(const json& j, const std::string& where) {
  if (!j.is_object()) throw input_error(where + ": vocab", "an object of token: id", j.type_name());
  Vocab vocab;
  vocab.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    if (!id.is_number_integer())
      throw input_error(where + ": vocab token '" + token + "'", "an integer id", id.dump());
    const auto v = id.get<std::int64_t>();
    if (v < 0 || v > INT32_MAX) {
      throw input_error(where + ": vocab token '" + token + "'", "an id in [0, 2^31)",
                        std::to_string(v));
    }
    vocab.emplace(token, static_cast<std::int32_t>(v));
  }
  return vocab;
}

// "a b" or ["a", "b"]. Some files (Llama 2's) have tokens containing spaces, as
// "   " for " " + " ": then the one split whose halves and whole are tokens is it.
std::pair<std::string, std::string> parse_merge(const json& m, const Vocab& vocab,
                                                const std::string& where) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) return {m[0], m[1]};
  std::vector<std::pair<std::string, std::string>> splits;
  if (m.is_string()) {
    const auto s = m.get<std::string>();
    for (auto space = s.find(' '); space != std::string::npos; space = s.find(' ', space + 1)) {
      splits.emplace_back(s.substr(0, space), s.substr(space + 1));
    }
    if (splits.size() > 1) {
      std::erase_if(splits, [&](const auto& p) {
        return !vocab.count(p.first) || !vocab.count(p.second) || !vocab.count(p.first + p.second);
      });
    }
  }
  if (splits.size() == 1) return splits[0];
  // A merges.txt line is not checked UTF-8, which dump() throws on unless told to replace.
  throw input_error(where, "a merge \"left right\" or [left, right]",
                    m.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::vector<AddedToken> parse_added(const json& j, const std::string& where) {
  std::vector<AddedToken> added;
  if (j.is_null()) return added;
  for (const auto& t : j) {
    const auto content = t.at("content").get<std::string>();
    if (t.value("single_word", false)) {
      throw input_error(where + ": added token '" + content + "'", "single_word false",
                        "true (not supported)");
    }
    added.push_back(
        {content, t.at("id").get<std::int32_t>(),
         t.value("normalized", false) ? AddedTokenStage::normalized : AddedTokenStage::raw,
         t.value("lstrip", false), t.value("rstrip", false), t.value("special", false)});
  }
  return added;
}

void parse_normalizer(const json& j, std::vector<NormalizerStep>& steps, const std::string& where) {
  if (j.is_null()) return;
  const auto type = type_of(j);
  const std::string marker(k_space_marker);
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) parse_normalizer(n, steps, where);
  } else if (type == "NFC") {
    steps.push_back(NormalizerStep::nfc);
  } else if (type == "Prepend" && j.value("prepend", "") == marker) {
    steps.push_back(NormalizerStep::prepend_marker);
  } else if (type == "Replace" && j.at("pattern").value("String", "") == " " &&
             j.value("content", "") == marker) {
    steps.push_back(NormalizerStep::spaces_to_marker);
  } else {
    throw input_error(where + ": normalizer",
                      "Sequence, NFC, Prepend(\"▁\") or Replace(\" \", \"▁\")", j.dump());
  }
}

PrependScheme parse_prepend_scheme(const json& j, const std::string& where) {
  if (!j.contains("prepend_scheme")) {
    return j.value("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
  }
  const auto s = j.at("prepend_scheme").get<std::string>();
  if (s == "always") return PrependScheme::always;
  if (s == "first") return PrependScheme::first;
  if (s == "never") return PrependScheme::never;
  throw input_error(where + ": Metaspace prepend_scheme", "always, first or never", s);
}

void parse_pre_tokenizer(const json& j, PreTokenizerConfig& pre, const std::string& where) {
  if (j.is_null()) return;
  const auto type = type_of(j);
  if (type == "Sequence") {
    for (const auto& p : j.at("pretokenizers")) parse_pre_tokenizer(p, pre, where);
  } else if (type == "Split") {
    const auto pattern = j.at("pattern").value("Regex", j.at("pattern").value("String", ""));
    const auto regex = recognise_split_pattern(pattern);
    if (!regex)
      throw input_error(where + ": pre_tokenizer Split pattern",
                        "the GPT-2, Llama 3 or Qwen2 regex", "'" + pattern + "'");
    if (j.value("behavior", "") != "Isolated" || j.value("invert", false)) {
      throw input_error(where + ": pre_tokenizer Split", "behavior Isolated, invert false",
                        j.dump());
    }
    pre.regex = regex;
  } else if (type == "ByteLevel") {
    pre.kind = PreTokenizerKind::byte_level;
    pre.prepend = j.value("add_prefix_space", false) ? PrependScheme::always : PrependScheme::never;
    if (j.value("use_regex", true)) {
      if (pre.regex)
        throw input_error(where + ": pre_tokenizer", "one word split",
                          "a Split and a ByteLevel with use_regex");
      pre.regex = SplitRegex::gpt2;
    }
  } else if (type == "Metaspace" && j.value("replacement", "") == std::string(k_space_marker)) {
    pre.kind = PreTokenizerKind::metaspace;
    pre.prepend = parse_prepend_scheme(j, where);
    pre.split = j.value("split", true) ? MetaspaceSplit::on : MetaspaceSplit::off;
  } else {
    throw input_error(where + ": pre_tokenizer", "Sequence, Split, ByteLevel or Metaspace(\"▁\")",
                      j.dump());
  }
  if (pre.regex && pre.kind == PreTokenizerKind::metaspace) {
    throw input_error(where + ": pre_tokenizer", "a Split only with ByteLevel",
                      "a Split with Metaspace");
  }
}

void parse_decoder(const json& j, DecoderConfig& dec, const std::string& where) {
  if (j.is_null()) return;
  const auto type = type_of(j);
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) parse_decoder(d, dec, where);
  } else if (type == "ByteLevel") {
    dec.kind = DecoderKind::byte_level;
  } else if (type == "Metaspace") {
    dec.kind = DecoderKind::sentencepiece;
    dec.strip_leading_spaces = parse_prepend_scheme(j, where) == PrependScheme::never ? 0 : 1;
  } else if (type == "Replace" || type == "ByteFallback" || type == "Fuse") {
    dec.kind = DecoderKind::sentencepiece;  // "▁" -> " ", <0xNN> -> bytes, join
  } else if (type == "Strip" && j.value("content", "") == " " && j.value("stop", 0) == 0) {
    dec.strip_leading_spaces = j.value("start", 0);
  } else {
    throw input_error(where + ": decoder",
                      "ByteLevel, Metaspace, Replace, ByteFallback, Fuse or Strip", j.dump());
  }
}

std::optional<std::string> special_token_text(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const auto& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return std::nullopt;
}

// The pipeline sections of tokenizer.json, or the part a tokenizer class fixes.
struct Pipeline {
  std::vector<NormalizerStep> normalizer;
  PreTokenizerConfig pre_tokenizer;
  DecoderConfig decoder;
  ByteFallback byte_fallback = ByteFallback::off;
  bool operator==(const Pipeline&) const = default;
};

// The class tokenizer_config.json names ("" when none; transformers v5 builds
// "LlamaTokenizerFast" as LlamaTokenizer, and so on) and its Llama class's
// legacy switch.
struct TokenizerClass {
  std::string name;
  bool legacy = false;
};

// The pipelines transformers v5 builds for these tokenizer classes
// (tests/data/tokenizer_classes: transformers 5.17's, serialized). Gemma's
// Split(" ") pre-tokenizer finds no space after its normalizer: none. Llama's
// Metaspace puts "▁" before the first piece only, or with legacy before every
// piece between added tokens; neither before a text that starts with a space.
std::optional<Pipeline> class_pipeline(const TokenizerClass& tokenizer_class) {
  const std::string_view name = tokenizer_class.name;
  if (name == "LlamaTokenizer")
    return Pipeline{{},
                    {PreTokenizerKind::metaspace, std::nullopt,
                     tokenizer_class.legacy ? PrependScheme::always : PrependScheme::first,
                     MetaspaceSplit::off},
                    {DecoderKind::sentencepiece, 1},
                    ByteFallback::on};
  if (name == "Qwen2Tokenizer")
    return Pipeline{{NormalizerStep::nfc},
                    {PreTokenizerKind::byte_level, SplitRegex::qwen2, PrependScheme::never,
                     MetaspaceSplit::off},
                    {DecoderKind::byte_level, 0},
                    ByteFallback::off};
  if (name == "GemmaTokenizer")
    return Pipeline{
        {NormalizerStep::spaces_to_marker}, {}, {DecoderKind::sentencepiece, 0}, ByteFallback::on};
  return std::nullopt;
}

Pipeline parse_pipeline(const json& j, const std::string& where) {
  Pipeline p;
  parse_normalizer(j.value("normalizer", json()), p.normalizer, where);
  parse_pre_tokenizer(j.value("pre_tokenizer", json()), p.pre_tokenizer, where);
  p.decoder.kind = p.pre_tokenizer.kind == PreTokenizerKind::byte_level
                       ? DecoderKind::byte_level
                       : DecoderKind::sentencepiece;
  parse_decoder(j.value("decoder", json()), p.decoder, where);
  const json& m = j.at("model");
  p.byte_fallback = m.value("byte_fallback", false) ? ByteFallback::on : ByteFallback::off;
  return p;
}

// tokenizer.json's pipeline, or the class's when `tokenizer_class` fixes one
// (then `note` says whether tokenizer.json's own differs).
Pipeline choose_pipeline(const json& j, const std::string& where,
                         const TokenizerClass& tokenizer_class, std::string& note) {
  const std::optional<Pipeline> fixed = class_pipeline(tokenizer_class);
  if (!fixed) return parse_pipeline(j, where);
  std::string own;
  try {
    if (parse_pipeline(j, where) == *fixed) return *fixed;
    own = "differs";
  } catch (const InputError&) {
    own = "is one ptq does not run";
  }
  note = "tokenizer_config.json names " + tokenizer_class.name +
         ": its normalizer, pre-tokenizer and decoder run, as in transformers v5 (" + where +
         "'s own pipeline " + own + ")";
  return *fixed;
}

// tokenizer_config.json: `legacy: false` turns the Llama normalizer (Prepend +
// Replace) into Metaspace with prepend_scheme "first", as transformers does: no
// "▁" is added after an added token, nor before a text that starts with a space.
void apply_tokenizer_config(const fs::path& path, const json& config, Tokenizer::Impl& t) {
  const auto& n = t.normalizer;
  const bool llama_normalizer =
      std::find(n.begin(), n.end(), NormalizerStep::prepend_marker) != n.end();
  if (config.value("legacy", true) == false && llama_normalizer &&
      t.pre_tokenizer.kind == PreTokenizerKind::none) {
    std::erase_if(t.normalizer, [](NormalizerStep s) { return s != NormalizerStep::nfc; });
    t.pre_tokenizer = {PreTokenizerKind::metaspace, std::nullopt, PrependScheme::first,
                       MetaspaceSplit::off};
  }
  t.source += " + " + path.filename().string();
  auto lookup = [&](const char* key) -> std::optional<std::int32_t> {
    const auto text = special_token_text(config, key);
    if (!text) return std::nullopt;
    for (const auto& a : t.added) {
      if (a.content == *text) return a.id;
    }
    if (const auto* id = t.bpe.find(*text)) return *id;
    throw input_error(path.string() + ": " + key, "a token of the vocabulary", "'" + *text + "'");
  };
  t.bos = lookup("bos_token");
  t.eos = lookup("eos_token");
}

TokenizerClass tokenizer_class_of(const json& config) {
  TokenizerClass c;
  if (!config.is_object()) return c;
  if (const auto named = config.find("tokenizer_class");
      named != config.end() && named->is_string())
    c.name = named->get<std::string>();
  if (c.name.ends_with("TokenizerFast")) c.name.resize(c.name.size() - 4);
  if (const auto legacy = config.find("legacy"); legacy != config.end() && legacy->is_boolean())
    c.legacy = legacy->get<bool>();
  return c;
}

std::unique_ptr<Tokenizer::Impl> parse_tokenizer_json(const fs::path& path,
                                                      const TokenizerClass& tokenizer_class) {
  const auto where = path.string();
  const auto j = parse_json(path);
  if (!j.is_object() || !j.contains("model") || !j.at("model").is_object()) {
    throw input_error(where, "a \"model\" object", "none");
  }
  const auto& m = j.at("model");
  if (m.value("type", "BPE") != "BPE")
    throw input_error(where + ": model type", "BPE", m.value("type", ""));
  if (!m.contains("vocab") || !m.contains("merges"))
    throw input_error(where + ": model", "vocab and merges", "a model without them");
  auto added = parse_added(j.value("added_tokens", json()), where);
  auto vocab = parse_vocab(m.at("vocab"), where);
  std::vector<std::pair<std::string, std::string>> merges;
  for (const auto& x : m.at("merges")) merges.push_back(parse_merge(x, vocab, where + ": merges"));
  const auto limit = static_cast<std::int32_t>(vocab.size() + added.size());
  auto t =
      std::make_unique<Tokenizer::Impl>(where, BpeModel(std::move(vocab), merges, limit, where));
  t->merges = std::move(merges);
  t->added = std::move(added);
  t->model.whole_word_lookup =
      m.value("ignore_merges", false) ? WholeWordLookup::on : WholeWordLookup::off;
  if (m.contains("unk_token") && m.at("unk_token").is_string()) {
    const auto* unk = t->bpe.find(m.at("unk_token").get<std::string>());
    if (!unk)
      throw input_error(where + ": model unk_token", "a token of the vocab",
                        m.at("unk_token").dump());
    t->model.unk_id = *unk;
  }
  Pipeline pipeline = choose_pipeline(j, where, tokenizer_class, t->pipeline_note);
  t->normalizer = std::move(pipeline.normalizer);
  t->pre_tokenizer = pipeline.pre_tokenizer;
  t->decoder = pipeline.decoder;
  t->model.byte_fallback = pipeline.byte_fallback;
  return t;
}

Tokenizer::Impl load_merges_txt(const fs::path& vocab_json, const fs::path& merges_txt) {
  auto vocab = parse_vocab(parse_json(vocab_json), vocab_json.string());
  std::vector<std::pair<std::string, std::string>> merges;
  std::istringstream lines(read_text_file(merges_txt));
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (line.empty() || (number == 1 && line.starts_with("#version"))) continue;
    merges.push_back(parse_merge(line, vocab, merges_txt.string() + ":" + std::to_string(number)));
  }
  const auto where = vocab_json.string() + " + " + merges_txt.filename().string();
  const auto limit = static_cast<std::int32_t>(vocab.size());
  Tokenizer::Impl t(where, BpeModel(std::move(vocab), merges, limit, where));
  t.merges = std::move(merges);
  return t;
}

}  // namespace

void AddedTokenIndex::add(std::string pattern, std::size_t token) {
  if (pattern.empty()) return;
  by_first_byte[static_cast<unsigned char>(pattern[0])].push_back(patterns.size());
  patterns.emplace_back(std::move(pattern), token);
}

void Tokenizer::Impl::finish() {
  // An added id sizes id_to_token: one far past the vocabulary (2^31 - 1) would
  // allocate gigabytes, so ids run to the vocabulary's and the added tokens' count.
  const std::int64_t most = std::int64_t{bpe.id_limit()} + static_cast<std::int64_t>(added.size());
  for (const auto& a : added) {
    if (a.id < 0 || a.id >= most)
      throw input_error(source + ": added token '" + a.content + "'",
                        "an id in [0, " + std::to_string(most) + ") (vocabulary and added tokens)",
                        std::to_string(a.id));
  }
  std::int32_t limit = bpe.id_limit();
  for (const auto& a : added) limit = std::max(limit, a.id + 1);
  id_to_token.assign(static_cast<std::size_t>(limit), "");
  for (std::int32_t id = 0; id < bpe.id_limit(); ++id)
    id_to_token[static_cast<std::size_t>(id)] = bpe.token(id);
  while (!id_to_token.empty() && id_to_token.back().empty()) id_to_token.pop_back();
  for (std::size_t i = 0; i < added.size(); ++i) {
    const auto& a = added[i];
    if (static_cast<std::size_t>(a.id) >= id_to_token.size())
      id_to_token.resize(static_cast<std::size_t>(a.id) + 1);
    auto& slot = id_to_token[static_cast<std::size_t>(a.id)];
    if (!slot.empty() && slot != a.content) {
      throw input_error(source + ": added token id " + std::to_string(a.id),
                        "'" + a.content + "' or an unused id", "model token '" + slot + "'");
    }
    slot = a.content;
    added_by_content[a.content] = a.id;
    if (a.stage == AddedTokenStage::raw)
      raw_added.add(a.content, i);
    else
      normalized_added.add(normalize(a.content), i);
  }
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto* id = bpe.find(name);
    byte_fallback_ids[static_cast<std::size_t>(b)] = id ? *id : -1;
    if (id && model.byte_fallback == ByteFallback::on)
      byte_of_fallback_id[*id] = static_cast<unsigned char>(b);
  }
  if (pre_tokenizer.kind != PreTokenizerKind::byte_level) return;
  for (char32_t c : unicode::byte_to_char()) {
    std::string s;
    unicode::append_utf8(s, c);
    if (!bpe.find(s))
      throw input_error(source + ": byte-level vocab",
                        "a token for each of the 256 byte characters", "'" + s + "' missing");
  }
}

Tokenizer Tokenizer::load(const fs::path& dir_or_tokenizer_json) {
  const auto& p = dir_or_tokenizer_json;
  if (fs::is_directory(p) && !fs::exists(p / "tokenizer.json")) {
    if (fs::exists(p / "vocab.json") && fs::exists(p / "merges.txt"))
      return load_gpt2_files(p / "vocab.json", p / "merges.txt");
    throw input_error(p.string(), "tokenizer.json or vocab.json + merges.txt", "neither");
  }
  const auto json_path = fs::is_directory(p) ? p / "tokenizer.json" : p;
  try {
    const auto config_path = json_path.parent_path() / "tokenizer_config.json";
    const json config = fs::exists(config_path) ? parse_json(config_path) : json::object();
    auto impl = parse_tokenizer_json(json_path, tokenizer_class_of(config));
    if (fs::exists(config_path)) apply_tokenizer_config(config_path, config, *impl);
    impl->finish();
    return Tokenizer(std::move(impl));
  } catch (const json::exception& e) {
    throw input_error(json_path.string(), "a tokenizer.json of the documented shape", e.what());
  }
}

Tokenizer Tokenizer::load_gpt2_files(const fs::path& vocab_json, const fs::path& merges_txt,
                                     const Gpt2FilesConfig& config) {
  auto impl = std::make_unique<Impl>(load_merges_txt(vocab_json, merges_txt));
  impl->pre_tokenizer = {PreTokenizerKind::byte_level, config.regex, PrependScheme::never,
                         MetaspaceSplit::off};
  impl->decoder.kind = DecoderKind::byte_level;
  impl->model.whole_word_lookup = config.whole_word_lookup;
  impl->finish();
  return Tokenizer(std::move(impl));
}

// The vocabulary as converters see it (tokenizer.hpp). Kept beside loading:
// these accessors report what the loaded sections said.
TokenizerFamily Tokenizer::family() const {
  return impl_->pre_tokenizer.kind == PreTokenizerKind::byte_level
             ? TokenizerFamily::byte_level_bpe
             : TokenizerFamily::sentencepiece_bpe;
}

std::optional<SplitRegex> Tokenizer::split_regex() const { return impl_->pre_tokenizer.regex; }

const std::string& Tokenizer::pipeline_note() const { return impl_->pipeline_note; }

bool Tokenizer::prepends_space() const {
  const auto& n = impl_->normalizer;
  return std::find(n.begin(), n.end(), NormalizerStep::prepend_marker) != n.end() ||
         (impl_->pre_tokenizer.kind == PreTokenizerKind::metaspace &&
          impl_->pre_tokenizer.prepend != PrependScheme::never);
}

const std::vector<std::pair<std::string, std::string>>& Tokenizer::merges() const {
  return impl_->merges;
}

std::vector<VocabEntry> Tokenizer::vocabulary() const {
  const Impl& t = *impl_;
  std::vector<VocabEntry> entries(t.id_to_token.size());
  for (std::size_t id = 0; id < entries.size(); ++id) {
    const auto& text = t.id_to_token[id];
    const auto origin = text.empty() ? TokenOrigin::unused : TokenOrigin::model;
    entries[id] = {text, origin};
  }
  for (const auto& fallback : t.byte_of_fallback_id)
    entries[static_cast<std::size_t>(fallback.first)].origin = TokenOrigin::byte_fallback;
  for (const auto& a : t.added) {
    entries[static_cast<std::size_t>(a.id)].origin =
        a.special ? TokenOrigin::added_special : TokenOrigin::added;
  }
  return entries;
}

}  // namespace ptq
