#pragma once
// A packed Hugging Face folder (GPTQ, AWQ, compressed-tensors, bitsandbytes)
// read back through the quantization_config in its config.json: the grid of
// each packed Linear (for re-packing: `ptq export`) and the checkpoint with
// every packed Linear dequantized as the format's loaders do (`ptq eval`).
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "algorithms/quantized_weight.hpp"
#include "io/safetensors.hpp"
#include "pipeline/formats/output_formats.hpp"

namespace ptq {

struct PackedFolder {
  OutputFormat format;
  // The grid of the Linear <base> ("model.layers.0.self_attn.q_proj");
  // InputError naming it when its tensors are missing or wrong, or when the
  // file holds no grid ptq keeps (bitsandbytes without double quantization).
  std::function<QuantizedWeight(const std::string& base)> linear;
  // Every tensor, each packed Linear replaced by its float32 <base>.weight.
  std::function<Checkpoint()> dequantized;
};

// nullopt for a folder without a packed format's quantization_config (a float
// checkpoint or ptq's dequantized output); InputError for a malformed one.
std::optional<PackedFolder> open_packed_folder(const std::filesystem::path& dir);

}  // namespace ptq
