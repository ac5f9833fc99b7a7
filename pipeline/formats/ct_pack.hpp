#pragma once
// One Linear of a compressed-tensors checkpoint in its "pack-quantized"
// (and, below, "int-quantized") format, as compressed-tensors 0.20 (the version transformers 5 and
// vLLM load) writes and reads it:
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
#include <span>
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

// compressed-tensors' "int-quantized" format, W8A8 (SmoothQuant's int8 weights
// and activations), per Linear:
//   weight        int8 [out, in]: q = ptq's unsigned int8 code - 128
//   weight_scale  float32 [out, 1]                 W[o, i] = weight_scale[o] * q[o, i]
//   input_scale   float32 [1], static per-tensor activations only: the input is
//                 rounded to int8 with that scale (dynamic ones: per token).
struct Int8Linear {
  std::int64_t out = 0, in = 0;
  std::vector<std::int8_t> weight;
  std::vector<float> weight_scale;
};
// InputError naming `where` unless the grid is 8-bit symmetric per channel with
// ptq's int8 zero (algorithms/int8.hpp).
Int8Linear pack_int8(const QuantizedMatrix& m, const std::string& where);
QuantizedMatrix unpack_int8(const Int8Linear& t, const std::string& where);

// What a compressed-tensors quantization_config says: the weights' grid, the
// format (pack-quantized weight-only, or int-quantized W8A8) and the input
// activations (int8 per token or per tensor, with int-quantized only).
enum class CtActivations { none, token, tensor };
struct CompressedTensorsScheme {
  QuantSpec spec;
  bool int_quantized = false;
  CtActivations activations = CtActivations::none;

  bool operator==(const CompressedTensorsScheme&) const = default;
};

// config.json's quantization_config for weight-only int quantization of every
// decoder Linear (the head stays float: ignore ["lm_head"]).
// `act_order`: GPTQ ran in act-order with static groups ("actorder": "weight",
// which keeps the natural groups; compressed-tensors 0.20 has no other).
nlohmann::ordered_json compressed_tensors_config(const QuantSpec& spec, bool act_order);
// The same with one config group per grid, each targeting its Linears by
// module name ("model.layers.0.mlp.down_proj"): a mix of grids.
struct CompressedTensorsTargets {
  QuantSpec spec;
  std::vector<std::string> modules;
};
nlohmann::ordered_json compressed_tensors_config(std::span<const CompressedTensorsTargets> groups,
                                                 bool act_order);
// The bytes of a pack-quantized Linear [out, in] on `spec`'s grid: its packed
// codes, float16 scales, zero points (asymmetric) and int64 shape.
std::uint64_t compressed_linear_bytes(const QuantSpec& spec, std::int64_t in, std::int64_t out);
// The same for W8A8: int8 weights per channel, int8 inputs per token (dynamic)
// or per tensor (static, `activations` tensor).
nlohmann::ordered_json compressed_tensors_w8a8_config(CtActivations activations);
// A compressed-tensors quantization_config: its config groups in order, each
// with its targets and scheme, and the modules it leaves float.
struct CompressedTensorsGroup {
  std::string name;
  std::vector<std::string> targets;
  CompressedTensorsScheme scheme;
};
struct CompressedTensorsConfig {
  std::vector<CompressedTensorsGroup> groups;
  std::vector<std::string> ignore;

  // The scheme of the Linear `module` ("model.layers.0.mlp.down_proj"): the
  // first group with a target naming it ("Linear", "re:<regex>" matched from
  // the start of the name, or the name itself); nullptr when ignored or in none.
  const CompressedTensorsScheme* scheme_for(const std::string& module) const;
  // The int8 input scheme every group states (ptq's forward rounds each block
  // input once); InputError naming `where` when the groups differ.
  CtActivations activations(const std::string& where) const;
};

// The config of a config.json with a compressed-tensors quantization_config of
// int weights, each group pack-quantized without activation quantization or
// int-quantized W8A8 (the top-level format, or "mixed-precision" with one per
// group); nullopt without one. InputError naming `where` for anything else.
std::optional<CompressedTensorsConfig> read_compressed_tensors_config(const nlohmann::json& config,
                                                                      const std::string& where);

// The grid of the quantized Linear <base> in the scheme's format; InputError
// naming `where` and the tensor when any is missing or disagrees with it.
QuantizedMatrix read_compressed_linear(const Checkpoint& packed, const std::string& base,
                                       const CompressedTensorsScheme& scheme,
                                       const std::string& where);
// The folder's tensors with every quantized Linear (pack-quantized:
// <name>.weight_packed, _scale, _zero_point, _shape; int-quantized: the int8
// <name>.weight, weight_scale, input_scale) replaced by its float32 <name>.weight.
Checkpoint dequantized_compressed_checkpoint(const std::filesystem::path& dir,
                                             const Checkpoint& packed,
                                             const CompressedTensorsConfig& config);

}  // namespace ptq
