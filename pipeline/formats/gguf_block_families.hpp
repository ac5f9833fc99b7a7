#pragma once
// Internal to the format library: one packer per family of ggml grids, each in
// its own file beside its block structs. `out` is sized by the caller
// (packed_size); `q` arrives from unpack sized like ggml_quantize's result.
#include <cstddef>
#include <span>

#include "algorithms/ggml_grid.hpp"

namespace ptq::gguf_detail {

// block_q8_0, block_q4_0, block_q4_1, block_q5_0, block_q5_1. gguf_blocks_legacy.cpp
void pack_legacy(const GgmlBlocks& q, std::span<std::byte> out);
void unpack_legacy(std::span<const std::byte> in, GgmlBlocks& q);

// block_q2_K ... block_q6_K. gguf_blocks_k.cpp
void pack_kquant(const GgmlBlocks& q, std::span<std::byte> out);
void unpack_kquant(std::span<const std::byte> in, GgmlBlocks& q);

// block_iq4_nl, block_iq4_xs. gguf_blocks_iq4.cpp
void pack_iq4(const GgmlBlocks& q, std::span<std::byte> out);
void unpack_iq4(std::span<const std::byte> in, GgmlBlocks& q);

// Bytes per block of a grid (sizeof the block struct).
std::size_t block_bytes(GgmlGrid grid);

}  // namespace ptq::gguf_detail
