// The tokenizer keys of a GGUF model file (tokenizer.ggml.*), as the converter
// writes them (TextModel._set_vocab_gpt2 / _set_vocab_llama_hf, gguf-py's
// SpecialVocab), from the vocabulary ptq's tokenizer loader reads.
#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/formats/gguf_model.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

// gguf-py's TokenType (llama.cpp's llama_token_type).
enum class TokenType : std::int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6
};

// llama.cpp's names of the pre-tokenizers whose regex ptq implements. GPT-2's
// is accepted as "olmo" (the fixtures' tiny-f16.gguf, PROTOCOL.md).
struct PreTokenizerRow {
  SplitRegex regex;
  std::string_view name;
};
constexpr std::array<PreTokenizerRow, 3> kPreTokenizers{{
    {SplitRegex::gpt2, "olmo"},
    {SplitRegex::llama3, "llama-bpe"},
    {SplitRegex::qwen2, "qwen2"},
}};

// SpecialVocab's token types that have a GGUF key, in its order.
struct SpecialRow {
  std::string_view type;  // tokenizer_config.json's "<type>_token", config.json's "<type>_token_id"
  std::string_view key;
};
constexpr std::array<SpecialRow, 6> kSpecialTokens{{
    {"bos", "tokenizer.ggml.bos_token_id"},
    {"eos", "tokenizer.ggml.eos_token_id"},
    {"unk", "tokenizer.ggml.unknown_token_id"},
    {"sep", "tokenizer.ggml.seperator_token_id"},  // sic: gguf-py's spelling
    {"pad", "tokenizer.ggml.padding_token_id"},
    {"mask", "tokenizer.ggml.mask_token_id"},
}};

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁"

Json optional_json(const fs::path& path) {
  return fs::exists(path) ? read_json_file(path.string()) : Json();
}

// The converter marks added tokens spelled like "<|im_start|>" as control
// tokens even when tokenizer.json does not say special.
bool looks_special(std::string_view text) { return text.starts_with("<|") && text.ends_with("|>"); }

TokenType token_type(const VocabEntry& e) {
  switch (e.origin) {
    case TokenOrigin::model:
      return TokenType::normal;
    case TokenOrigin::byte_fallback:
      return TokenType::byte;
    case TokenOrigin::added_special:
      return TokenType::control;
    case TokenOrigin::added:
      return looks_special(e.text) ? TokenType::control : TokenType::user_defined;
    case TokenOrigin::unused:
      return TokenType::unused;
  }
  return TokenType::normal;
}

// llama.cpp pre-normalizes user-defined tokens: their "▁" are spaces.
std::string token_text(const VocabEntry& e, std::size_t id, TokenType type) {
  if (type == TokenType::unused) return "[PAD" + std::to_string(id) + "]";
  if (type != TokenType::user_defined) return e.text;
  std::string text;
  for (std::size_t i = 0; i < e.text.size();) {
    const bool marker = std::string_view(e.text).substr(i).starts_with(kSpaceMarker);
    text += marker ? ' ' : e.text[i];
    i += marker ? kSpaceMarker.size() : 1;
  }
  return text;
}

// The vocabulary padded to config's vocab_size with unused [PADi] entries, as
// the converter does for models whose embedding has spare rows.
std::vector<VocabEntry> padded_vocabulary(const Tokenizer& tok, const ModelConfig& config,
                                          const fs::path& model_dir) {
  auto entries = tok.vocabulary();
  if (entries.size() > static_cast<std::size_t>(config.vocab_size)) {
    throw input_error(model_dir.string() + ": tokenizer",
                      "at most vocab_size = " + std::to_string(config.vocab_size) + " tokens",
                      std::to_string(entries.size()));
  }
  entries.resize(static_cast<std::size_t>(config.vocab_size), {"", TokenOrigin::unused});
  return entries;
}

std::string_view pre_tokenizer_name(const Tokenizer& tok, const fs::path& model_dir) {
  for (const auto& row : kPreTokenizers) {
    if (tok.split_regex() == row.regex) return row.name;
  }
  throw input_error(model_dir.string() + ": tokenizer pre_tokenizer",
                    "the GPT-2, Llama 3 or Qwen2 regex (llama.cpp names them)", "no word split");
}

// SentencePiece-style files from tokenizer.json have no scores; llama.cpp's
// SPM tokenizer merges the highest-scored pair first, so -rank of the merge
// that makes a token reproduces BPE's order (0 for tokens no merge makes).
std::vector<float> merge_rank_scores(const Tokenizer& tok, std::size_t n) {
  std::vector<float> scores(n, 0.0f);
  const auto& merges = tok.merges();
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto id = tok.token_id(merges[rank].first + merges[rank].second);
    if (id && static_cast<std::size_t>(*id) < n && scores[static_cast<std::size_t>(*id)] == 0.0f)
      scores[static_cast<std::size_t>(*id)] = -static_cast<float>(rank + 1);
  }
  return scores;
}

void add_vocabulary(Metadata& m, const Tokenizer& tok, const ModelConfig& config,
                    const fs::path& model_dir) {
  const auto entries = padded_vocabulary(tok, config, model_dir);
  std::vector<std::string> texts;
  std::vector<std::int32_t> types;
  for (std::size_t id = 0; id < entries.size(); ++id) {
    const TokenType type = token_type(entries[id]);
    texts.push_back(token_text(entries[id], id, type));
    types.push_back(static_cast<std::int32_t>(type));
  }
  m.emplace_back("tokenizer.ggml.tokens", gguf::make_string_array(std::move(texts)));
  if (tok.family() == TokenizerFamily::sentencepiece_bpe) {
    const auto scores = merge_rank_scores(tok, entries.size());
    m.emplace_back("tokenizer.ggml.scores", gguf::make_f32_array(scores));
  }
  m.emplace_back("tokenizer.ggml.token_type", gguf::make_i32_array(types));
  if (tok.family() == TokenizerFamily::byte_level_bpe) {
    std::vector<std::string> merges;
    for (const auto& [left, right] : tok.merges()) merges.push_back(left + ' ' + right);
    m.emplace_back("tokenizer.ggml.merges", gguf::make_string_array(std::move(merges)));
  }
}

// tokenizer_config.json's "<type>_token": a string or {"content": ...}.
std::optional<std::string> special_text(const Json& config, std::string_view type) {
  const std::string key = std::string(type) + "_token";
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const Json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string())
    return v.at("content").get<std::string>();
  return std::nullopt;
}

struct SpecialIds {
  std::vector<std::pair<const SpecialRow*, std::int32_t>> ids;  // in the order found
  bool has(const SpecialRow* row) const {
    for (const auto& id : ids) {
      if (id.first == row) return true;
    }
    return false;
  }
};

// SpecialVocab: tokenizer_config.json's tokens (looked up among the added
// tokens), then config.json's ids for the types still unset; ids outside the
// vocabulary are dropped.
SpecialIds special_ids(const Tokenizer& tok, const Json& tokenizer_config, const Json& config,
                       std::int32_t n_vocab) {
  const auto entries = tok.vocabulary();
  SpecialIds found;
  for (const auto& row : kSpecialTokens) {
    const auto text = special_text(tokenizer_config, row.type);
    for (std::size_t id = 0; text && id < entries.size(); ++id) {
      const auto origin = entries[id].origin;
      const bool added = origin == TokenOrigin::added || origin == TokenOrigin::added_special;
      if (added && entries[id].text == *text) {
        found.ids.emplace_back(&row, static_cast<std::int32_t>(id));
        break;
      }
    }
  }
  for (const auto& row : kSpecialTokens) {
    const std::string key = std::string(row.type) + "_token_id";
    if (found.has(&row) || !config.is_object() || !config.contains(key)) continue;
    const Json& v = config.at(key);
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() < n_vocab)
      found.ids.emplace_back(&row, v.get<std::int32_t>());
  }
  return found;
}

// Whether the tokenizer adds BOS/EOS: yes where tokenizer.json's
// TemplateProcessing puts a special token first / last in the single-sequence
// template, else tokenizer_config.json's add_bos_token / add_eos_token.
std::vector<std::pair<std::string, bool>> added_specials(const Json& tokenizer_json,
                                                         const Json& tokenizer_config) {
  std::vector<std::pair<std::string, bool>> flags;
  const Json post =
      tokenizer_json.is_object() ? tokenizer_json.value("post_processor", Json()) : Json();
  const Json processors = post.is_object() ? post.value("processors", Json::array({post})) : Json();
  for (const Json& p : processors.is_array() ? processors : Json::array()) {
    if (!p.is_object() || p.value("type", "") != "TemplateProcessing") continue;
    const Json single = p.value("single", Json());
    if (!single.is_array() || single.size() < 2 || !single.front().is_object() ||
        !single.back().is_object())
      continue;
    if (single.front().contains("SpecialToken")) flags.emplace_back("bos", true);
    if (single.back().contains("SpecialToken")) flags.emplace_back("eos", true);
  }
  for (const char* type : {"bos", "eos"}) {
    const std::string key = std::string("add_") + type + "_token";
    const bool known =
        std::any_of(flags.begin(), flags.end(), [&](const auto& f) { return f.first == type; });
    if (!known && tokenizer_config.is_object() && tokenizer_config.contains(key) &&
        tokenizer_config.at(key).is_boolean())
      flags.emplace_back(type, tokenizer_config.at(key).get<bool>());
  }
  return flags;
}

// tokenizer_config.json's chat_template (a string, or named templates of which
// "default" is the one llama.cpp applies), else chat_template.jinja.
std::optional<std::string> chat_template(const fs::path& model_dir, const Json& tokenizer_config) {
  const Json t =
      tokenizer_config.is_object() ? tokenizer_config.value("chat_template", Json()) : Json();
  if (t.is_string()) return t.get<std::string>();
  for (const Json& named : t.is_array() ? t : Json::array()) {
    if (named.is_object() && named.value("name", "") == "default" &&
        named.value("template", Json()).is_string())
      return named.at("template").get<std::string>();
  }
  const fs::path jinja = model_dir / "chat_template.jinja";
  if (!fs::exists(jinja)) return std::nullopt;
  return read_text_file(jinja);
}

}  // namespace

Metadata gguf_tokenizer_metadata(const fs::path& model_dir, const ModelConfig& config) {
  const Tokenizer tok = Tokenizer::load(model_dir);
  const Json tokenizer_json = optional_json(model_dir / "tokenizer.json");
  const Json tokenizer_config = optional_json(model_dir / "tokenizer_config.json");
  const Json config_json = optional_json(model_dir / "config.json");
  const bool byte_level = tok.family() == TokenizerFamily::byte_level_bpe;
  Metadata m;
  m.emplace_back("tokenizer.ggml.model", gguf::make_string(byte_level ? "gpt2" : "llama"));
  m.emplace_back(
      "tokenizer.ggml.pre",
      gguf::make_string(std::string(byte_level ? pre_tokenizer_name(tok, model_dir) : "default")));
  add_vocabulary(m, tok, config, model_dir);
  // llama.cpp puts a space before SentencePiece-style text unless told not to.
  if (!byte_level && !tok.prepends_space())
    m.emplace_back("tokenizer.ggml.add_space_prefix", gguf::make_bool(false));
  const SpecialIds specials = special_ids(tok, tokenizer_config, config_json, config.vocab_size);
  for (const auto& [row, id] : specials.ids)
    m.emplace_back(std::string(row->key), gguf::make_u32(static_cast<std::uint32_t>(id)));
  for (const auto& [type, add] : added_specials(tokenizer_json, tokenizer_config))
    m.emplace_back("tokenizer.ggml.add_" + type + "_token", gguf::make_bool(add));
  if (auto t = chat_template(model_dir, tokenizer_config))
    m.emplace_back("tokenizer.chat_template", gguf::make_string(std::move(*t)));
  return m;
}

}  // namespace ptq
