#pragma once
// Atomic text output: written to "<path>.tmp", renamed over `path` when complete,
// so a reader never sees a half-written file.
#include <filesystem>
#include <string_view>

namespace ptq {

// InputError naming the file on a write failure (the temporary file is removed).
void write_text_atomic(const std::filesystem::path& path, std::string_view text);

}  // namespace ptq
