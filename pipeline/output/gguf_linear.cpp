#include "pipeline/output/gguf_linear.hpp"

#include <array>
#include <cstdint>
#include <iterator>
#include <utility>

#include "io/error.hpp"
#include "pipeline/formats/gguf_blocks.hpp"

namespace ptq {

namespace {

constexpr std::pair<LinearRole, GgufTensorRole> kGgufRoles[] = {
    {LinearRole::q, GgufTensorRole::attn_q},      {LinearRole::k, GgufTensorRole::attn_k},
    {LinearRole::v, GgufTensorRole::attn_v},      {LinearRole::o, GgufTensorRole::attn_output},
    {LinearRole::gate, GgufTensorRole::ffn_gate}, {LinearRole::up, GgufTensorRole::ffn_up},
    {LinearRole::down, GgufTensorRole::ffn_down}};
static_assert(std::size(kGgufRoles) == all_linear_roles.size());

}  // namespace

std::string gguf_linear_name(int layer, LinearRole role) {
  for (const auto& [linear, tensor] : kGgufRoles)
    if (linear == role) return gguf_weight_name(tensor, layer);
  PTQ_ASSERT(false);
}

std::optional<LinearRole> gguf_linear_role(GgufTensorRole role) {
  for (const auto& [linear, tensor] : kGgufRoles)
    if (tensor == role) return linear;
  return std::nullopt;
}

GgufModelShape gguf_model_shape(const ModelConfig& config) {
  return {.n_layer = config.num_layers,
          .n_head = config.num_heads,
          .n_head_kv = config.num_kv_heads,
          .tied_embeddings = config.tie_word_embeddings};
}

GgmlGrid gguf_linear_grid(const GgufPolicy& policy, const GgufQuantizeFlags& flags,
                          const ModelConfig& config, int layer, LinearRole role) {
  const std::string name = gguf_linear_name(layer, role);
  const std::array<std::int64_t, 2> ne = {linear_in_features(config, role),
                                          linear_out_features(config, role)};
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
  const std::string name = gguf_linear_name(layer, role);
  const auto it = recipe.gguf_tensor_types.find(name);
  const std::optional<GgmlGrid> grid =
      it != recipe.gguf_tensor_types.end() ? gguf_grid(it->second) : std::nullopt;
  if (!grid)
    throw input_error(name, "a quantized GGUF type to round onto",
                      it == recipe.gguf_tensor_types.end() ? "none" : "a float type");
  return *grid;
}

}  // namespace ptq
