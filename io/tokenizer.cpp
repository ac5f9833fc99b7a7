// Encoding and decoding with a loaded Tokenizer (loading is in tokenizer_load.cpp).
#include "io/tokenizer.hpp"

#include <string>
#include <unordered_map>

#include "io/error.hpp"
#include "io/pretokenize.hpp"
#include "io/tokenizer_impl.hpp"
#include "io/unicode.hpp"

namespace ptq {
namespace {

using unicode::CharClass;

// A piece of text between added tokens, or one added token.
struct Segment {
  std::string_view text;
  std::int32_t token = -1;  // -1: plain text
  std::size_t offset = 0;   // where it starts in the text given to split_added
};

bool space_at(std::string_view text, std::size_t pos) {
  const auto n =
      std::min(unicode::utf8_length(static_cast<unsigned char>(text[pos])), text.size() - pos);
  const auto cp = unicode::decode_utf8(text.substr(pos, n), "added-token context").code_points;
  return !cp.empty() && unicode::classify(cp[0]) == CharClass::space;
}

std::size_t previous_char(std::string_view text, std::size_t pos) {
  do {
    --pos;
  } while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80);
  return pos;
}

// Splits out added tokens, leftmost-longest, widening a match over whitespace
// where the token has lstrip/rstrip.
std::vector<Segment> split_added(std::string_view text, const AddedTokenIndex& index,
                                 const std::vector<AddedToken>& added) {
  std::vector<Segment> out;
  std::size_t plain = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::pair<std::string, std::size_t>* best = nullptr;
    for (auto i : index.by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const auto& p = index.patterns[i];
      if (text.substr(pos).starts_with(p.first) && (!best || p.first.size() > best->first.size())) {
        best = &p;
      }
    }
    if (!best) {
      ++pos;
      continue;
    }
    const auto& token = added[best->second];
    std::size_t start = pos;
    std::size_t end = pos + best->first.size();
    while (token.lstrip && start > plain && space_at(text, previous_char(text, start))) {
      start = previous_char(text, start);
    }
    while (token.rstrip && end < text.size() && space_at(text, end)) {
      end += unicode::utf8_length(static_cast<unsigned char>(text[end]));
    }
    if (start > plain) out.push_back({text.substr(plain, start - plain), -1, plain});
    out.push_back({text.substr(start, end - start), token.id, start});
    plain = pos = end;
  }
  if (plain < text.size()) out.push_back({text.substr(plain), -1, plain});
  return out;
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Ids of words already encoded in this call: text repeats words a lot.
using WordCache =
    std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>>;

enum class Position { text_start, later };

class Encoder {
 public:
  explicit Encoder(const Tokenizer::Impl& t) : t_(t) {}

  void encode(std::string_view text, std::vector<std::int32_t>& out) {
    for (const auto& seg : split_added(text, t_.raw_added, t_.added)) {
      if (seg.token >= 0) {
        out.push_back(seg.token);
        continue;
      }
      const std::string normalized = t_.normalize(seg.text);
      const auto at = seg.offset == 0 ? Position::text_start : Position::later;
      for (const auto& sub : split_added(normalized, t_.normalized_added, t_.added)) {
        if (sub.token >= 0) {
          out.push_back(sub.token);
        } else {
          pre_tokenize(sub.text, sub.offset == 0 ? at : Position::later, out);
        }
      }
    }
  }

 private:
  void pre_tokenize(std::string_view piece, Position at, std::vector<std::int32_t>& out) {
    const auto& pre = t_.pre_tokenizer;
    switch (pre.kind) {
      case PreTokenizerKind::none:
        return model_word(piece, out);
      case PreTokenizerKind::byte_level:
        return byte_level(piece, out);
      case PreTokenizerKind::metaspace:
        return metaspace(piece, at, out);
    }
  }

  void byte_level(std::string_view piece, std::vector<std::int32_t>& out) {
    std::string prefixed;
    if (t_.pre_tokenizer.prepend != PrependScheme::never && !piece.starts_with(' ')) {
      prefixed.reserve(piece.size() + 1);
      prefixed += ' ';
      prefixed += piece;
      piece = prefixed;
    }
    const auto& regex = t_.pre_tokenizer.regex;
    const auto words = regex ? split_words(piece, *regex, t_.source + ": text to encode")
                             : std::vector<std::string_view>{piece};
    const auto& map = unicode::byte_to_char();
    for (auto word : words) {
      auto it = cache_.find(word);
      if (it == cache_.end()) {
        std::string mapped;
        for (unsigned char b : word) unicode::append_utf8(mapped, map[b]);
        std::vector<std::int32_t> ids;
        model_word(mapped, ids);
        it = cache_.emplace(std::string(word), std::move(ids)).first;
      }
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  }

  void metaspace(std::string_view piece, Position at, std::vector<std::int32_t>& out) {
    std::string s;
    for (char c : piece) {
      if (c == ' ')
        s += k_space_marker;
      else
        s += c;
    }
    const auto scheme = t_.pre_tokenizer.prepend;
    const bool prepend = scheme == PrependScheme::always ||
                         (scheme == PrependScheme::first && at == Position::text_start);
    if (prepend && !s.empty() && !std::string_view(s).starts_with(k_space_marker)) {
      s.insert(0, k_space_marker);
    }
    if (t_.pre_tokenizer.split == MetaspaceSplit::off) return model_word(s, out);
    std::size_t start = 0;
    for (std::size_t pos = s.find(k_space_marker, 1); pos != std::string::npos;
         pos = s.find(k_space_marker, pos + 1)) {
      model_word(std::string_view(s).substr(start, pos - start), out);
      start = pos;
    }
    model_word(std::string_view(s).substr(start), out);
  }

  // The BPE model on one word: its characters, unknown ones as <0xNN> bytes or
  // unk, then the merges.
  void model_word(std::string_view word, std::vector<std::int32_t>& out) {
    if (word.empty()) return;
    if (t_.model.whole_word_lookup == WholeWordLookup::on) {
      if (const auto* id = t_.bpe.find(word)) return out.push_back(*id);
    }
    symbols_.clear();
    for (std::size_t pos = 0; pos < word.size();) {
      const auto len =
          std::min(unicode::utf8_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
      add_symbol(word.substr(pos, len));
      pos += len;
    }
    t_.bpe.merge(symbols_, out);
  }

  void add_symbol(std::string_view ch) {
    if (const auto* id = t_.bpe.find(ch)) return symbols_.push_back(*id);
    if (t_.model.byte_fallback == ByteFallback::on && has_fallback(ch)) {
      for (unsigned char b : ch) symbols_.push_back(t_.byte_fallback_ids[b]);
      return;
    }
    if (!t_.model.unk_id) {
      throw input_error(
          t_.source,
          "every character of the text in the vocabulary (no unk token, no byte fallback)",
          "'" + std::string(ch) + "'");
    }
    // fuse_unk: a run of unknown characters becomes one unk.
    if (symbols_.empty() || symbols_.back() != *t_.model.unk_id)
      symbols_.push_back(*t_.model.unk_id);
  }

  bool has_fallback(std::string_view ch) const {
    for (unsigned char b : ch) {
      if (t_.byte_fallback_ids[b] < 0) return false;
    }
    return true;
  }

  const Tokenizer::Impl& t_;
  WordCache cache_;
  std::vector<std::int32_t> symbols_;
};

// Appends byte-fallback bytes: as text when they form valid UTF-8, else one
// U+FFFD per byte (as tokenizers' ByteFallback decoder).
void flush_bytes(std::string& bytes, std::string& out) {
  if (bytes.empty()) return;
  if (unicode::first_invalid_utf8(bytes)) {
    for (std::size_t i = 0; i < bytes.size(); ++i) out += "\xEF\xBF\xBD";
  } else {
    out += bytes;
  }
  bytes.clear();
}

}  // namespace

std::string Tokenizer::Impl::normalize(std::string_view piece) const {
  std::string s(piece);
  for (auto step : normalizer) {
    switch (step) {
      case NormalizerStep::nfc:
        s = unicode::nfc(s);
        break;
      case NormalizerStep::prepend_marker:
        if (!s.empty()) s.insert(0, k_space_marker);
        break;
      case NormalizerStep::spaces_to_marker: {
        std::string r;
        for (char c : s) {
          if (c == ' ')
            r += k_space_marker;
          else
            r += c;
        }
        s = std::move(r);
        break;
      }
    }
  }
  return s;
}

Tokenizer::Tokenizer(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  if (auto bad = unicode::first_invalid_utf8(text)) {
    throw input_error(impl_->source + ": text to encode", "valid UTF-8",
                      "an invalid byte sequence at byte " + std::to_string(*bad));
  }
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3);
  Encoder(*impl_).encode(text, out);
  return out;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const auto& t = *impl_;
  std::string out;
  std::string bytes;  // pending byte-fallback bytes
  for (auto id : ids) {
    const auto& tok = token(id);
    if (t.added_by_content.count(tok)) {
      flush_bytes(bytes, out);
      out += tok;
    } else if (t.decoder.kind == DecoderKind::byte_level) {
      for (char32_t c : unicode::decode_utf8(tok, t.source).code_points) {
        const int b = unicode::char_to_byte(c);
        if (b >= 0)
          out += static_cast<char>(b);
        else
          unicode::append_utf8(out, c);
      }
    } else if (auto b = t.byte_of_fallback_id.find(id); b != t.byte_of_fallback_id.end()) {
      bytes += static_cast<char>(b->second);
    } else {
      flush_bytes(bytes, out);
      for (std::size_t pos = 0; pos < tok.size();) {
        if (std::string_view(tok).substr(pos).starts_with(k_space_marker)) {
          out += ' ';
          pos += k_space_marker.size();
        } else {
          out += tok[pos++];
        }
      }
    }
  }
  flush_bytes(bytes, out);
  std::size_t strip = 0;
  while (strip < static_cast<std::size_t>(t.decoder.strip_leading_spaces) && strip < out.size() &&
         out[strip] == ' ')
    ++strip;
  return out.substr(strip);
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_to_token.size()); }

std::optional<std::int32_t> Tokenizer::token_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(std::string(token));
      it != impl_->added_by_content.end()) {
    return it->second;
  }
  if (const auto* id = impl_->bpe.find(token)) return *id;
  return std::nullopt;
}

const std::string& Tokenizer::token(std::int32_t id) const {
  const auto& all = impl_->id_to_token;
  if (id < 0 || static_cast<std::size_t>(id) >= all.size() ||
      all[static_cast<std::size_t>(id)].empty()) {
    throw input_error(impl_->source + ": token id",
                      "an id of the vocabulary (size " + std::to_string(all.size()) + ")",
                      std::to_string(id));
  }
  return all[static_cast<std::size_t>(id)];
}

std::optional<std::int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<std::int32_t> Tokenizer::eos_id() const { return impl_->eos; }

}  // namespace ptq
