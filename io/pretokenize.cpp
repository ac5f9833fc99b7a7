#include "io/pretokenize.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "io/error.hpp"
#include "io/unicode.hpp"

namespace ptq {
namespace {

using unicode::CharClass;

struct RegexInfo {
  SplitRegex regex;
  std::string_view name;
  std::string_view pattern;
};

// The one table of known pre-tokenizer regexes (patterns as their tokenizer.json
// files spell them).
constexpr std::array<RegexInfo, 3> k_regexes{{
    {SplitRegex::gpt2, "gpt2",
     R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"},
    {SplitRegex::llama3, "llama3",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
    {SplitRegex::qwen2, "qwen2",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
}};

const RegexInfo& info(SplitRegex regex) {
  for (const auto& r : k_regexes) {
    if (r.regex == regex) return r;
  }
  PTQ_ASSERT(false);
}

enum class Case { sensitive, insensitive };

// Code points with their classes; out-of-range positions behave as "no char".
class Scanner {
 public:
  explicit Scanner(const unicode::DecodedText& text) : cp_(text.code_points) {
    cls_.reserve(cp_.size());
    for (char32_t c : cp_) cls_.push_back(unicode::classify(c));
  }
  std::size_t size() const { return cp_.size(); }
  bool is(std::size_t i, CharClass c) const { return i < cp_.size() && cls_[i] == c; }
  bool is_char(std::size_t i, char32_t c) const { return i < cp_.size() && cp_[i] == c; }
  bool is_newline(std::size_t i) const { return is_char(i, U'\r') || is_char(i, U'\n'); }
  std::size_t run(std::size_t i, CharClass c) const {
    while (is(i, c)) ++i;
    return i;
  }
  std::size_t run_newlines(std::size_t i) const {
    while (is_newline(i)) ++i;
    return i;
  }

  // 's|'t|'re|'ve|'m|'ll|'d; returns the end or 0 when none matches.
  std::size_t contraction(std::size_t i, Case c) const {
    if (!is_char(i, U'\'')) return 0;
    static constexpr std::array<std::string_view, 7> k_suffixes{"s", "t",  "re", "ve",
                                                                "m", "ll", "d"};
    for (auto suffix : k_suffixes) {
      std::size_t k = 0;
      while (k < suffix.size() && letter_equals(i + 1 + k, suffix[k], c)) ++k;
      if (k == suffix.size()) return i + 1 + k;
    }
    return 0;
  }

  // \s+(?!\S) then \s+: a whitespace run gives up its last character to a
  // following non-space, unless the run is that single character.
  std::size_t space_run(std::size_t i) const {
    const std::size_t end = run(i, CharClass::space);
    if (end == size() || end - i == 1) return end;
    return end - 1;
  }

 private:
  bool letter_equals(std::size_t i, char ascii_lower, Case c) const {
    if (i >= cp_.size()) return false;
    char32_t ch = cp_[i];
    if (c == Case::insensitive && ch >= U'A' && ch <= U'Z') ch += U'a' - U'A';
    return ch == static_cast<char32_t>(ascii_lower);
  }

  const std::vector<char32_t>& cp_;
  std::vector<CharClass> cls_;
};

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::size_t next_gpt2(const Scanner& s, std::size_t i) {
  if (auto end = s.contraction(i, Case::sensitive)) return end;
  const std::size_t k = s.is_char(i, U' ') ? i + 1 : i;  // " ?"
  for (auto c : {CharClass::letter, CharClass::number, CharClass::other}) {
    if (s.is(k, c)) return s.run(k, c);
  }
  return s.space_run(i);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
std::size_t next_llama3(const Scanner& s, std::size_t i, std::size_t max_digits) {
  if (auto end = s.contraction(i, Case::insensitive)) return end;
  if (s.is(i, CharClass::letter)) return s.run(i, CharClass::letter);
  if (!s.is_newline(i) && !s.is(i, CharClass::number) && s.is(i + 1, CharClass::letter)) {
    return s.run(i + 1, CharClass::letter);
  }
  if (s.is(i, CharClass::number)) return std::min(s.run(i, CharClass::number), i + max_digits);
  const std::size_t k = s.is_char(i, U' ') ? i + 1 : i;
  if (s.is(k, CharClass::other)) return s.run_newlines(s.run(k, CharClass::other));
  // \s*[\r\n]+ backtracks to the last newline of the whitespace run.
  const std::size_t end = s.run(i, CharClass::space);
  for (std::size_t j = end; j > i; --j) {
    if (s.is_newline(j - 1)) return j;
  }
  return s.space_run(i);
}

std::size_t next_piece(const Scanner& s, std::size_t i, SplitRegex regex) {
  switch (regex) {
    case SplitRegex::gpt2:
      return next_gpt2(s, i);
    case SplitRegex::llama3:
      return next_llama3(s, i, 3);
    case SplitRegex::qwen2:
      return next_llama3(s, i, 1);
  }
  PTQ_ASSERT(false);
}

}  // namespace

std::string_view split_regex_pattern(SplitRegex regex) { return info(regex).pattern; }
std::string_view split_regex_name(SplitRegex regex) { return info(regex).name; }

std::optional<SplitRegex> recognise_split_pattern(std::string_view pattern) {
  for (const auto& r : k_regexes) {
    if (r.pattern == pattern) return r.regex;
  }
  return std::nullopt;
}

std::vector<std::string_view> split_words(std::string_view text, SplitRegex regex,
                                          std::string_view where) {
  const auto decoded = unicode::decode_utf8(text, where);
  const Scanner scanner(decoded);
  std::vector<std::string_view> words;
  for (std::size_t i = 0; i < scanner.size();) {
    const std::size_t end = next_piece(scanner, i, regex);
    PTQ_ASSERT(end > i);
    const auto from = decoded.offsets[i];
    words.push_back(text.substr(from, decoded.offsets[end] - from));
    i = end;
  }
  return words;
}

}  // namespace ptq
