#pragma once
// HDF5 layout of quantized Linears, shared by the final quantized.h5 and the
// per-block resume checkpoints:
//   <prefix>/codes  uint8 [out, in]     <prefix>/scales float32 [out, groups]
//   <prefix>/zeros  int32 [out, groups] <prefix>/g_idx  int32 [in]
//   attributes: bits, symmetric, granularity, group_size, min_max_range, weight_mse, gptq_loss,
//   damping, damping_retries, cholesky_failed
// NF4 Linears store instead (see algorithms/nf4.hpp):
//   <prefix>/nf4_codes uint8 [out, in]  <prefix>/absmax_codes uint8 [blocks]
//   <prefix>/absmax_scales float32 [ceil(blocks / absmax_block)]
//   attributes: format "nf4", block_size, absmax_block_size, absmax_offset
#include <string>

#include "io/hdf5.hpp"
#include "pipeline/quantize.hpp"

namespace ptq {

std::string linear_group_path(int layer, LinearRole role);  // "layers/<i>/<role>"

void write_quantized_linear(H5Writer& out, const QuantizedLinear& q, bool with_timing);
QuantizedLinear read_quantized_linear(const H5Reader& in, int layer, LinearRole role);

}  // namespace ptq
