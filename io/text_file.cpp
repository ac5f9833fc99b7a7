#include "io/text_file.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "io/error.hpp"
#include "io/file_writer.hpp"
#include "io/input_file.hpp"
#include "io/output_path.hpp"
#include "io/unicode.hpp"

namespace ptq {

void write_text_atomic(const std::filesystem::path& path, std::string_view text) {
  OutputFile file(path, "");
  FileWriter out(file.temp_path());
  out.write_all(text.data(), text.size());
  out.sync_and_close();
  file.commit();
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in = open_input_file(path, "a readable text file");
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string read_utf8_text_file(const std::filesystem::path& path) {
  std::string text = read_text_file(path);
  std::optional<std::size_t> bad = unicode::first_invalid_utf8(text);
  const std::size_t nul = text.find('\0');
  if (nul != std::string::npos && (!bad || nul < *bad)) bad = nul;
  if (!bad) return text;
  const auto line = 1 + std::count(text.begin(), text.begin() + std::ptrdiff_t(*bad), '\n');
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[*bad]));
  throw input_error(
      path.string() + ": line " + std::to_string(line) + ", byte " + std::to_string(*bad),
      "UTF-8 text",
      text[*bad] == '\0' ? "a NUL byte (binary data?)"
                         : std::string("an invalid byte sequence starting ") + byte);
}

}  // namespace ptq
