#pragma once
// The bytes of ggml's quantization blocks (ggml-common.h): packing the grids of
// algorithms/ggml_grid.hpp into the block structs llama.cpp reads, and back.
// Each block struct's size is static_assert'ed beside its layout.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "algorithms/ggml_grid.hpp"

namespace ptq {

// GGUF tensor type id of a grid (ggml.h enum ggml_type: Q4_0 = 2, ..., IQ4_XS = 23).
std::uint32_t gguf_type_id(GgmlGrid grid);

// The grid of a GGUF tensor type id; nullopt for the float types and types
// ptq has no grid for.
std::optional<GgmlGrid> gguf_grid(std::uint32_t type);
// F32 (0), F16 (1) or BF16 (30).
bool gguf_float_type(std::uint32_t type);

// Packed size in bytes of `rows` rows of `cols` weights.
std::size_t packed_size(GgmlGrid grid, std::int64_t rows, std::int64_t cols);

// The tensor data llama.cpp reads, blocks in row-major order.
std::vector<std::byte> pack(const GgmlBlocks& q);

// The inverse of pack: InputError when bytes has the wrong size for [rows, cols].
GgmlBlocks unpack(GgmlGrid grid, std::int64_t rows, std::int64_t cols,
                  std::span<const std::byte> bytes);

}  // namespace ptq
