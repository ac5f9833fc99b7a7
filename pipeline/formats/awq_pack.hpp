#pragma once
// One Linear of an AWQ checkpoint in AutoAWQ's GEMM layout ("version": "gemm"),
// as AutoAWQ and transformers' AWQ integration read it:
//   qweight int32 [in, out / 8]: each input row's 4-bit codes along the output
//           dimension, eight to a word in AWQ's interleaved order: nibble k of
//           word j holds output column 8 j + (0, 2, 4, 6, 1, 3, 5, 7)[k];
//   qzeros  int32 [groups, out / 8]: the zero points, packed the same way;
//   scales  float16 [groups, out].
// W[o, i] = scales[g, o] * (q[i, o] - zero[g, o]) with g = i / group_size.
// AWQ's layout has no g_idx (no act-order) and stores 4-bit asymmetric groups.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/quantized_matrix.hpp"
#include "io/safetensors.hpp"

namespace ptq {

struct AwqLinear {
  std::int64_t in = 0, out = 0, groups = 0;
  std::vector<std::int32_t> qweight, qzeros;
  std::vector<std::uint16_t> scales;  // float16 bits
};

// InputError naming `where` unless the grid is 4-bit, asymmetric, in groups of
// natural column order, with in and out multiples of 32 and float16 scales.
void require_awq_packable(const QuantizedMatrix& m, const std::string& where);
AwqLinear pack_awq(const QuantizedMatrix& m, const std::string& where);
QuantizedMatrix unpack_awq(const AwqLinear& t, const QuantSpec& spec, const std::string& where);

// config.json's quantization_config: quant_method awq, bits 4, group_size,
// zero_point true, version gemm.
nlohmann::ordered_json awq_quantization_config(const QuantSpec& spec);
std::optional<QuantSpec> read_awq_quantization_config(const nlohmann::json& config,
                                                      const std::string& where);

// The grid of the packed Linear <base> (.qweight, .qzeros, .scales);
// InputError naming `where` and the tensor when any is missing or wrong.
QuantizedMatrix read_awq_linear(const Checkpoint& packed, const std::string& base,
                                const QuantSpec& spec, const std::string& where);
// The folder's tensors with every packed Linear replaced by its float32 weight.
Checkpoint dequantized_awq_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed,
                                      const QuantSpec& spec);

}  // namespace ptq
