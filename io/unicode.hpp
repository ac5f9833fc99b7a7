#pragma once
// Unicode helpers for the tokenizers (internal to io/): UTF-8 decoding into code
// points, the character classes the pre-tokenizer regexes use (from utf8proc's
// general categories), and GPT-2's byte <-> printable-character mapping.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::unicode {

// The classes a pre-tokenizer regex distinguishes: \p{L}, \p{N}, \s, and the rest.
enum class CharClass : std::uint8_t { letter, number, space, other };

CharClass classify(char32_t cp);

// Code points of a UTF-8 string with the byte offset where each starts;
// offsets has one extra entry, the text's size. `where` names the text in the
// InputError thrown for invalid UTF-8.
struct DecodedText {
  std::vector<char32_t> code_points;
  std::vector<std::size_t> offsets;
};
DecodedText decode_utf8(std::string_view text, std::string_view where);

// Where the first invalid UTF-8 sequence starts, if any (no allocation).
std::optional<std::size_t> first_invalid_utf8(std::string_view text);

void append_utf8(std::string& out, char32_t cp);

// Byte length of the UTF-8 sequence that starts with `lead` (1 for invalid leads).
std::size_t utf8_length(unsigned char lead);

// GPT-2's reversible byte -> character mapping: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
const std::array<char32_t, 256>& byte_to_char();
// The inverse: the byte a mapped character stands for, or -1.
int char_to_byte(char32_t c);

// NFC normalization (utf8proc); the text must be valid UTF-8.
std::string nfc(std::string_view text);

}  // namespace ptq::unicode
