#pragma once
// One Linear of a GPTQ checkpoint as AutoGPTQ and GPTQModel write and load it
// (the layout their QuantLinear modules document):
//   qweight int32 [in * bits / 32, out]: each output column's codes along the
//           input dimension as one little-endian stream of `bits`-bit values
//           (3-bit values straddle word boundaries, 32 values per 3 words);
//   qzeros  int32 [groups, out * bits / 32]: each group's zero points along the
//           output dimension in the same stream, stored as zero - 1 (checkpoint
//           format "gptq", v1) or as they are ("gptq_v2");
//   scales  float16 [groups, out]; g_idx int32 [in]: each input's group.
// W[o, i] = scales[g, o] * (q[i, o] - zero[g, o]) with g = g_idx[i].
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/quantized_matrix.hpp"
#include "io/safetensors.hpp"

namespace ptq {

enum class GptqZeros { v1, v2 };

struct GptqLinear {
  int bits = 4;
  std::int64_t in = 0, out = 0, groups = 0;
  std::vector<std::int32_t> qweight, qzeros, g_idx;
  std::vector<std::uint16_t> scales;  // float16 bits
};

// checkpoint_format of a GPTQ checkpoint: "gptq" (v1) or "gptq_v2".
std::string gptq_checkpoint_format(GptqZeros zeros);
// v1 unless a zero point of `m` is 0 (v1 stores zero - 1 in `bits` bits).
GptqZeros gptq_zeros_needed(const QuantizedMatrix& m);
// InputError naming `where` when the grid cannot be a GPTQ tensor: bits other
// than 2, 3, 4 or 8, a per-tensor grid, in or out not a multiple of 32,
// scales that are not float16 values (ScaleStorage::f16 makes them so).
void require_gptq_packable(const QuantizedMatrix& m, const std::string& where);
GptqLinear pack_gptq(const QuantizedMatrix& m, GptqZeros zeros, const std::string& where);
// The grid back, with `spec` (bits, symmetry, granularity, group size) from the
// checkpoint's quantization_config. InputError naming `where` when the tensors'
// sizes disagree with in, out, groups and bits, or g_idx names a missing group.
QuantizedMatrix unpack_gptq(const GptqLinear& t, GptqZeros zeros, const QuantSpec& spec,
                            const std::string& where);

// The checkpoint-wide grid of a GPTQ folder's quantization_config.
struct GptqCheckpointGrid {
  QuantSpec spec;  // bits, sym, group_size (-1: per channel); f16 scales
  GptqZeros zeros = GptqZeros::v1;
  bool desc_act = false;
};

// config.json's quantization_config (and quantize_config.json) as the
// loaders read it: quant_method gptq, bits, group_size, desc_act, sym,
// static_groups, true_sequential, damp_percent, checkpoint_format, lm_head.
nlohmann::ordered_json gptq_quantization_config(const GptqCheckpointGrid& grid, bool static_groups,
                                                double damp_percent);
// The grid a config.json's quantization_config describes when it is a GPTQ
// one; nullopt for a config without one. InputError naming `where` for a
// GPTQ config ptq cannot read (bits, group_size, checkpoint_format).
std::optional<GptqCheckpointGrid> read_gptq_quantization_config(const nlohmann::json& config,
                                                                const std::string& where);

// The grid of the packed Linear <base> (its .qweight, .qzeros, .scales,
// .g_idx); InputError naming `where` and the tensor when any is missing or
// disagrees with the grid.
QuantizedMatrix read_gptq_linear(const Checkpoint& packed, const std::string& base,
                                 const GptqCheckpointGrid& grid, const std::string& where);
// A GPTQ folder's tensors with every packed Linear (<name>.qweight, .qzeros,
// .scales, .g_idx) replaced by its float32 <name>.weight, the rest as stored.
Checkpoint dequantized_gptq_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed,
                                       const GptqCheckpointGrid& grid);

}  // namespace ptq
