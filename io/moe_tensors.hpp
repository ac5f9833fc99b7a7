#pragma once
// Where a mixture-of-experts layer (Mixtral, Qwen3-MoE) keeps its router and
// experts in a Hugging Face checkpoint. Here in io/ rather than beside the
// rest of the names (calibrate/tensor_names.hpp) because the file formats,
// which see only io/ and algorithms/, place expert tensors too (GGUF stacks
// each role's experts into one tensor).
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_config.hpp"

namespace ptq {

// "model.layers.<layer>.<suffix>"
std::string block_tensor_name(int layer, std::string_view suffix);

// An expert's three Linears, in the order an expert runs them.
enum class ExpertLinear { gate, up, down };
inline constexpr std::array<ExpertLinear, 3> all_expert_linears = {
    ExpertLinear::gate, ExpertLinear::up, ExpertLinear::down};

// A mixture layer's tensors below "model.layers.{i}.", in one of two layouts:
// one module per expert Linear (transformers v4's names, which save_pretrained
// still writes), or all experts stacked in two tensors (v5's in-memory
// layout): gate_up_proj [experts, 2 * intermediate, hidden], each expert's
// gate rows before its up rows, and down_proj [experts, hidden, intermediate].
struct MoeTensors {
  bool stacked = false;
  std::string router;  // its ".weight": [experts, hidden]
  // Per-expert layout: the module of expert e's gate, up or down Linear.
  std::string expert_module(int expert, ExpertLinear linear) const;
  std::string_view experts_prefix;  // per-expert: "block_sparse_moe.experts." or "mlp.experts."
  bool mixtral_names = false;       // w1 (gate), w3 (up), w2 (down)
};
inline constexpr std::string_view stacked_gate_up_suffix = "mlp.experts.gate_up_proj";
inline constexpr std::string_view stacked_down_suffix = "mlp.experts.down_proj";
// The layout of layer `layer`: stacked when `has_tensor` finds its stacked
// gate_up_proj. Names are below "model.layers.{layer}.".
MoeTensors moe_tensors(const ModelConfig& config, int layer,
                       const std::function<bool(const std::string&)>& has_tensor);
// The per-expert layout's names, whatever the source's (what ptq writes).
MoeTensors per_expert_tensors(const ModelConfig& config, int layer);

// An expert Linear's Hugging Face weight shape [out, in]: gate and up
// [intermediate, hidden], down [hidden, intermediate].
std::array<std::int64_t, 2> expert_shape(const ModelConfig& config, ExpertLinear linear);

// The checkpoint tensors mixture layer `layer` reads in layout `names`: the
// router, then the two stacked tensors or every expert's three, each with the
// shape the config gives it.
struct ExpectedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
};
std::vector<ExpectedTensor> moe_source_tensors(const ModelConfig& config, int layer,
                                               const MoeTensors& names);

// Expert `expert`'s Linear in the checkpoint: rows [first_row, first_row +
// its out features) of `tensor` seen as a matrix of its last dimension's
// columns (a stacked [E, R, C] tensor as [E * R, C]).
struct ExpertRows {
  std::string tensor;
  std::int64_t first_row = 0;
};
ExpertRows expert_rows(const ModelConfig& config, int layer, const MoeTensors& names, int expert,
                       ExpertLinear linear);

}  // namespace ptq
