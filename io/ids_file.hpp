#pragma once
// Token-id files (*.ids): raw little-endian int32, no header.
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace ptq {

// InputError if the file is missing or its size is not a multiple of 4.
std::vector<std::int32_t> read_ids(const std::filesystem::path& path);

// The file's ids, each checked to be in [0, vocab_size): InputError naming the
// file, the token's index and its value otherwise (ids made for another model).
std::vector<std::int32_t> read_ids(const std::filesystem::path& path, std::int32_t vocab_size);

// Atomic: writes a temporary file beside `path`, then renames it over `path`.
void write_ids(const std::filesystem::path& path, std::span<const std::int32_t> ids);

}  // namespace ptq
