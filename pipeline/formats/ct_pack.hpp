#pragma once
// One Linear of a compressed-tensors checkpoint in its "pack-quantized"
// format, as compressed-tensors 0.20 (the version transformers 5 and vLLM
// load) writes and reads it:
//   weight_packed     int32 [out, ceil(in * bits / 32)]: each row's values,
//                     signed q + 2^(bits-1), as a little-endian bit stream;
//   weight_scale      float16 [out, groups];
//   weight_zero_point int32 [ceil(out * bits / 32), groups], asymmetric grids
//                     only: each group's zero points + 2^(bits-1) along the
//                     output dimension in the same stream;
//   weight_shape      int64 [2]: out, in.
// W[o, i] = scale[o, g] * (q[o, i] - zero_point[o, g]), g = i / group_size.
// With ptq's unsigned codes u and zeros z: q = u - 2^(bits-1) and
// zero_point = z - 2^(bits-1) (0 for a symmetric grid, whose z is 2^(bits-1)),
// so the stored values are u and z themselves.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/quantized_matrix.hpp"
#include "io/safetensors.hpp"

namespace ptq {

struct CompressedLinear {
  int bits = 4;
  bool symmetric = true;
  std::int64_t in = 0, out = 0, groups = 0;
  std::vector<std::int32_t> weight_packed, weight_zero_point;  // zero points: asymmetric only
  std::vector<std::uint16_t> weight_scale;                     // float16 bits
};

// InputError naming `where` when the grid cannot be a pack-quantized tensor:
// bits other than 4 or 8, a per-tensor grid, act-order groups, in or out not a
// multiple of 32, scales that are not float16 values, a symmetric grid whose
// zero is not 2^(bits-1).
void require_compressed_packable(const QuantizedMatrix& m, const std::string& where);
CompressedLinear pack_compressed(const QuantizedMatrix& m, const std::string& where);
// The grid back with `spec` from the checkpoint's config; InputError naming
// `where` when the tensors' sizes disagree with it.
QuantizedMatrix unpack_compressed(const CompressedLinear& t, const QuantSpec& spec,
                                  const std::string& where);

// config.json's quantization_config for weight-only int quantization of every
// decoder Linear (the head stays float: ignore ["lm_head"]).
// `act_order`: GPTQ ran in act-order with static groups ("actorder": "weight",
// which keeps the natural groups; compressed-tensors 0.20 has no other).
nlohmann::ordered_json compressed_tensors_config(const QuantSpec& spec, bool act_order);
// The weight grid of a config's compressed-tensors quantization_config in the
// pack-quantized format with one config group of int weights and no
// activation quantization; nullopt for a config without compressed-tensors.
// InputError naming `where` for anything else.
std::optional<QuantSpec> read_compressed_tensors_config(const nlohmann::json& config,
                                                        const std::string& where);

// The folder's tensors with every packed Linear (<name>.weight_packed,
// _scale, _zero_point, _shape) replaced by its float32 <name>.weight.
Checkpoint dequantized_compressed_checkpoint(const std::filesystem::path& dir,
                                             const Checkpoint& packed, const QuantSpec& spec);

}  // namespace ptq
