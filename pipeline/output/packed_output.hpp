#pragma once
// The packed Hugging Face formats' part of an output folder (GPTQ, AWQ,
// compressed-tensors and bitsandbytes NF4, pipeline/formats/gptq_pack.hpp,
// awq_pack.hpp, ct_pack.hpp, bnb_pack.hpp): the
// tensors that replace each quantized Linear's weight, and the
// quantization_config a loader reads from config.json.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "calibrate/act_quant.hpp"
#include "io/dtype.hpp"
#include "io/safetensors.hpp"
#include "pipeline/formats/ct_pack.hpp"
#include "pipeline/formats/gptq_pack.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

struct PackedTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

// What every Linear of one folder shares: GPTQ's zero layout (v2 when any
// Linear has a zero point of 0); the model's float dtype, its embedding's
// (bitsandbytes' dequantized weights and compute dtype); W8A8's int8
// activations; a mix's grids.
struct PackedLayout {
  GptqZeros zeros = GptqZeros::v1;
  DType dtype = DType::F16;
  std::optional<ActivationQuant> activations;
  // compressed-tensors weight-only Linears on more than one grid (a mix): each
  // grid with its Linears' module names, one config group each; else empty.
  std::vector<CompressedTensorsTargets> grids;
  // Mixture-of-experts models: the routers, Linears kept in float (full module
  // names), and the quantized modules of a block by the input they read (names
  // below "model.layers.<i>.", GPTQ's modules_in_block_to_quantize); else empty.
  std::vector<std::string> float_linears;
  std::vector<std::vector<std::string>> block_modules;
};
PackedLayout packed_layout(const ModelConfig& config, const QuantizedLinears& linears,
                           OutputFormat format, const Checkpoint& source,
                           const std::optional<ActivationQuant>& activations);

// The tensors replacing `weight_name` ("<module>.weight") in format
// gptq, awq, compressed-tensors or bnb-nf4.
std::vector<PackedTensor> packed_linear_tensors(OutputFormat format, const std::string& weight_name,
                                                const QuantizedLinear& q,
                                                const PackedLayout& layout);

// Adds quantization_config to dir/config.json (GPTQ also writes it alone as
// quantize_config.json, AutoGPTQ's file).
void write_packed_config(const std::filesystem::path& dir, const Recipe& recipe,
                         const PackedLayout& layout);

}  // namespace ptq
