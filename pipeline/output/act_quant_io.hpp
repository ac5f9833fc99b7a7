#pragma once
// Where a W8A8 output records its activation quantization, so that
// `ptq eval --model OUT` simulates it without flags:
//   config.json   "ptq_activation_quant": {"bits": 8, "symmetric": true,
//                                          "granularity": "token" | "tensor"}
//                 (its own key: transformers rejects an unknown quantization_config
//                 method, and the weights load as plain float16 without one)
//   quantized.h5  activations/scales float32 [layers, 4] (static scales, tensor only;
//                 columns in LinearInput order: attention_in, attention_out, mlp_in, mlp_hidden)
#include <filesystem>
#include <optional>
#include <string_view>

#include "calibrate/act_quant.hpp"
#include "io/hdf5.hpp"

namespace ptq {

inline constexpr std::string_view kActivationQuantKey = "ptq_activation_quant";

// Adds the key to an existing config.json (rewritten atomically).
void write_activation_config(const std::filesystem::path& config_json, const ActivationQuant& scheme);
void write_activation_scales(H5Writer& out, const ActivationQuant& scheme);

// The scheme recorded in a model folder (ptq's key, or a compressed-tensors
// int-quantized quantization_config), or none (also for a path without
// config.json: a GGUF file or folder); InputError on a malformed record.
std::optional<ActivationQuant> load_activation_quant(const std::filesystem::path& model_dir, int num_layers);

}  // namespace ptq
