#include "pipeline/output/gguf_linear.hpp"

#include <array>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <utility>

#include "io/error.hpp"
#include "pipeline/formats/gguf_blocks.hpp"

namespace ptq {

namespace {

// convert_hf_to_gguf.py's tensor of each Linear module (Phi-3's fused ones included).
constexpr std::pair<std::string_view, GgufTensorRole> kGgufRoles[] = {
    {"self_attn.q_proj", GgufTensorRole::attn_q},
    {"self_attn.k_proj", GgufTensorRole::attn_k},
    {"self_attn.v_proj", GgufTensorRole::attn_v},
    {"self_attn.qkv_proj", GgufTensorRole::attn_qkv},
    {"self_attn.o_proj", GgufTensorRole::attn_output},
    {"mlp.gate_proj", GgufTensorRole::ffn_gate},
    {"mlp.up_proj", GgufTensorRole::ffn_up},
    {"mlp.gate_up_proj", GgufTensorRole::ffn_up},
    {"mlp.down_proj", GgufTensorRole::ffn_down}};

// Whether the role is an expert's in this layer (a mixture layer's MLP).
bool is_expert(const ModelConfig& config, int layer, LinearRole role) {
  return config.is_moe(layer) &&
         (role == LinearRole::gate || role == LinearRole::up || role == LinearRole::down);
}

}  // namespace

std::string gguf_linear_name(const ModelConfig& config, int layer, LinearRole role) {
  const std::string_view module = linear_storage(config, role).module;
  for (const auto& [hf, tensor] : kGgufRoles)
    if (hf == module) return gguf_weight_name(tensor, layer, is_expert(config, layer, role));
  PTQ_ASSERT(false);
}

std::optional<LinearRole> gguf_linear_role(GgufTensorRole role) {
  for (const auto& [hf, tensor] : kGgufRoles)
    for (const LinearSpec& spec : linear_specs)
      if (tensor == role && spec.module == hf) return spec.role;
  return std::nullopt;
}

GgufModelShape gguf_model_shape(const ModelConfig& config) {
  return {.n_layer = config.num_layers,
          .n_head = config.num_heads,
          .n_head_kv = config.num_kv_heads,
          .n_expert = config.moe.experts,
          .tied_embeddings = config.tie_word_embeddings};
}

GgmlGrid gguf_linear_grid(const GgufPolicy& policy, const GgufQuantizeFlags& flags,
                          const ModelConfig& config, int layer, LinearRole role) {
  const std::string name = gguf_linear_name(config, layer, role);
  // An expert's row: hidden, or for down its own intermediate size (the rule
  // reads ne[0] alone; the rows are the expert's).
  const std::array<std::int64_t, 2> shape =
      is_expert(config, layer, role)
          ? expert_shape(config, expert_linear(role))
          : std::array<std::int64_t, 2>{linear_storage(config, role).rows,
                                        linear_in_features(config, role)};
  const std::array<std::int64_t, 2> ne = {shape[1], shape[0]};
  const std::optional<std::uint32_t> type =
      gguf_tensor_type(policy, name, ne, gguf_model_shape(config), flags);
  const std::optional<GgmlGrid> grid = type ? gguf_grid(*type) : std::nullopt;
  if (!grid)
    throw input_error(name, "a quantized GGUF type under " + std::string(policy.name),
                      type ? "type id " + std::to_string(*type) : "none");
  return *grid;
}

GgmlGrid gguf_linear_grid(const Recipe& recipe, const ModelConfig& config, int layer,
                          LinearRole role) {
  if (recipe.gguf_tensor_types.empty()) {
    const GgufPolicy* policy = find_policy(recipe.gguf_type);
    PTQ_ASSERT(policy != nullptr);  // Recipe::validate checked it
    return gguf_linear_grid(*policy, {.pure = false, .imatrix = true}, config, layer, role);
  }
  const std::string name = gguf_linear_name(config, layer, role);
  const auto it = recipe.gguf_tensor_types.find(name);
  const std::optional<GgmlGrid> grid =
      it != recipe.gguf_tensor_types.end() ? gguf_grid(it->second) : std::nullopt;
  if (!grid)
    throw input_error(name, "a quantized GGUF type to round onto",
                      it == recipe.gguf_tensor_types.end() ? "none" : "a float type");
  return *grid;
}

}  // namespace ptq
