#pragma once
// HDF5 layout of one quantized weight (algorithms/quantized_weight.hpp) under a
// group `p`, shared by quantized.h5 and the per-block resume checkpoints:
// uniform grid (QuantizedMatrix)
//   p/codes  uint8 [out, in]     p/scales float32 [out, groups]
//   p/zeros  int32 [out, groups] p/g_idx  int32 [in]
//   attributes: bits, symmetric, granularity, group_size, min_max_range (and ggml_range
//   = 1 for RangeRule::Ggml, ggml_min_range = 1 for RangeRule::GgmlMin, whose zeros
//   are float32; f16_scales = 1 for ScaleStorage::f16)
// NF4 (algorithms/nf4.hpp)
//   p/nf4_codes uint8 [out, in]  p/absmax_codes uint8 [blocks]
//   p/absmax_scales float32 [ceil(blocks / absmax_block)]
//   attributes: format "nf4", block_size, absmax_block_size, absmax_offset
// ggml block grid (algorithms/ggml_grid.hpp), packed as in GGUF so the record
// stays as small as the packed file:
//   p/ggml_blocks uint8 [bytes]  attributes: format "ggml", grid ("Q4_K", ...), rows, cols
// Stored enums and sizes are validated when read back (InputError naming the
// file and group).
#include <string>

#include "algorithms/quantized_weight.hpp"
#include "io/hdf5.hpp"

namespace ptq {

void write_weight(H5Writer& out, const std::string& p, const QuantizedWeight& q);
QuantizedWeight read_weight(const H5Reader& in, const std::string& p);

}  // namespace ptq
