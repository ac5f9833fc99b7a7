#pragma once
// A whole file mapped read-only, as the safetensors and GGUF readers hand out
// tensor bytes straight from the mapping. Their objects own the mapping (and
// release it in their destructors), so this is a pair of free functions rather
// than an owner of its own.
#include <cstddef>
#include <filesystem>
#include <span>

namespace ptq {

// Maps the regular file at `path` read-only and privately; an empty file gives an
// empty span (mmap refuses length 0). InputError naming the file when it cannot
// be opened, is not a regular file or cannot be mapped.
std::span<const std::byte> map_file(const std::filesystem::path& path);

// Releases what map_file returned; an empty span is left alone.
void unmap_file(std::span<const std::byte> map);

}  // namespace ptq
