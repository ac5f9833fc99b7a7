#pragma once
// The model file of `ptq quantize --format gguf`: llama.cpp's layout
// (pipeline/formats/gguf_model.hpp) with llama-quantize's per-tensor types
// for the recipe's gguf_type (gguf_policy.hpp). Each quantized tensor is
//  - a block Linear GPTQ or AWQ rounded onto that tensor's grid (Q4_0, Q4_1,
//    Q5_0, Q5_1, Q8_0): its codes and float16 scales as they are;
//  - anything else: ggml's own quantizer (algorithms/ggml_grid.hpp) on the
//    source weights, with the recipe's imatrix when given, which is
//    llama-quantize's result byte for byte.
// Float tensors are the converter's bytes, but the norms AWQ's scales were
// folded into (`replaced`), which are float32 as in every GGUF.
#include <filesystem>
#include <span>
#include <vector>

#include "io/safetensors.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// Writes `out_file` for the model folder `source_model` (config, tokenizer)
// whose tensors are `tensors`. `exported`: the Linears are an earlier run's,
// and each must land exactly on its type's blocks (InputError naming it else).
void write_gguf_file(const std::filesystem::path& source_model, const Checkpoint& tensors,
                     const std::filesystem::path& out_file, const Recipe& recipe,
                     const QuantizedLinears& linears, std::span<const ReplacedTensor> replaced,
                     bool exported = false);

}  // namespace ptq
