#pragma once
// A block Linear as a GGUF tensor: its llama.cpp name and the ggml grid
// llama-quantize's type policy gives it, so that GPTQ rounds each Linear onto
// the type the file stores it in.
#include <optional>
#include <string>

#include "algorithms/ggml_grid.hpp"
#include "calibrate/tensor_names.hpp"
#include "io/model_config.hpp"
#include "pipeline/formats/gguf_policy.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// "blk.<layer>.attn_q.weight", ... (convert_hf_to_gguf.py's names): the tensor
// that holds the Linear, Phi-3's q in "blk.<layer>.attn_qkv.weight", an
// expert's gate in its layer's "blk.<layer>.ffn_gate_exps.weight".
std::string gguf_linear_name(const ModelConfig& config, int layer, LinearRole role);

// The block Linear a GGUF tensor role names alone (attn_q -> q, ...); nullopt
// for token_embd, output, other and the fused attn_qkv.
std::optional<LinearRole> gguf_linear_role(GgufTensorRole role);

// The shape llama-quantize reads from the model, from its config.
GgufModelShape gguf_model_shape(const ModelConfig& config);

// The grid `policy` gives the Linear (with `flags`); InputError naming the
// tensor when that is a float type (no grid to round onto).
GgmlGrid gguf_linear_grid(const GgufPolicy& policy, const GgufQuantizeFlags& flags,
                          const ModelConfig& config, int layer, LinearRole role);

// The grid of the Linear's type in the run's file: recipe.gguf_tensor_types
// when set (a mix), else recipe.gguf_type's policy with an imatrix (GPTQ
// weighs every block by diag H, as an imatrix does).
GgmlGrid gguf_linear_grid(const Recipe& recipe, const ModelConfig& config, int layer,
                          LinearRole role);

}  // namespace ptq
