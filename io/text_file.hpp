#pragma once
// Atomic text output through OutputFile (io/output_path.hpp): written under a
// hidden temporary name beside `path`, renamed into place when complete, so a
// reader never sees a half-written file; a symlink or special file at `path`
// is refused, never replaced or written through.
#include <filesystem>
#include <string>
#include <string_view>

namespace ptq {

// InputError naming the file on a bad path or a write failure (the temporary
// file is removed).
void write_text_atomic(const std::filesystem::path& path, std::string_view text);

// The whole file's bytes; InputError naming the file when it cannot be opened.
std::string read_text_file(const std::filesystem::path& path);

// The same, checked to be text: valid UTF-8 without NUL bytes. InputError
// naming the file, line and byte offset of the first bad byte (binary data or
// another encoding given as text), never blamed on the tokenizer later.
std::string read_utf8_text_file(const std::filesystem::path& path);

}  // namespace ptq
