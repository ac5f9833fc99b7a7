#include "calibrate/tensor_names.hpp"

#include <algorithm>
#include <span>

#include "io/error.hpp"

namespace ptq {

namespace {

// A family's fused modules: its parts, in row order.
struct FusedModule {
  std::string_view module;
  std::span<const LinearRole> parts;
};

constexpr LinearRole kQkv[] = {LinearRole::q, LinearRole::k, LinearRole::v};
constexpr LinearRole kGateUp[] = {LinearRole::gate, LinearRole::up};
constexpr FusedModule kPhi3Fused[] = {{"self_attn.qkv_proj", kQkv}, {"mlp.gate_up_proj", kGateUp}};

std::span<const FusedModule> fused_modules(const ModelConfig& c) {
  if (c.arch == Architecture::Phi3) return kPhi3Fused;
  return {};
}

}  // namespace

LinearStorage linear_storage(const ModelConfig& c, LinearRole role) {
  for (const FusedModule& fused : fused_modules(c)) {
    if (std::find(fused.parts.begin(), fused.parts.end(), role) == fused.parts.end()) continue;
    LinearStorage stored{fused.module, 0, 0};
    for (LinearRole part : fused.parts) {
      if (part == role) stored.first_row = stored.rows;
      stored.rows += linear_out_features(c, part);
    }
    return stored;
  }
  return {linear_spec(role).module, 0, linear_out_features(c, role)};
}

bool has_fused_linears(const ModelConfig& c) { return !fused_modules(c).empty(); }

std::span<const LinearRole> roles_reading(LinearInput input) {
  // linear_specs lists the roles reading one input next to each other.
  const auto first = std::find_if(linear_specs.begin(), linear_specs.end(),
                                  [&](const LinearSpec& s) { return s.input == input; });
  const auto last = std::find_if(first, linear_specs.end(),
                                 [&](const LinearSpec& s) { return s.input != input; });
  return std::span(all_linear_roles)
      .subspan(static_cast<std::size_t>(first - linear_specs.begin()),
               static_cast<std::size_t>(last - first));
}

int input_features(const ModelConfig& c, LinearInput input) {
  return linear_in_features(c, roles_reading(input).front());
}

ExpertLinear expert_linear(LinearRole role) {
  switch (role) {
    case LinearRole::gate:
      return ExpertLinear::gate;
    case LinearRole::up:
      return ExpertLinear::up;
    case LinearRole::down:
      return ExpertLinear::down;
    default:
      PTQ_ASSERT(false && "experts hold gate, up and down Linears");
  }
  return ExpertLinear::gate;
}

std::string_view norm_tensor_suffix(const ModelConfig& c, NormRole role) {
  switch (role) {
    case NormRole::input:
      return "input_layernorm.weight";
    case NormRole::post_attention:
      return c.sandwich_norms ? "pre_feedforward_layernorm.weight"
                              : "post_attention_layernorm.weight";
    case NormRole::q_head:
      return c.qk_norm ? "self_attn.q_norm.weight" : "";
    case NormRole::k_head:
      return c.qk_norm ? "self_attn.k_norm.weight" : "";
    case NormRole::attention_out:
      return c.sandwich_norms ? "post_attention_layernorm.weight" : "";
    case NormRole::mlp_out:
      return c.sandwich_norms ? "post_feedforward_layernorm.weight" : "";
  }
  PTQ_ASSERT(false);
  return {};
}

int norm_size(const ModelConfig& c, NormRole role) {
  return role == NormRole::q_head || role == NormRole::k_head ? c.head_dim : c.hidden_size;
}

std::string_view linear_role_name(LinearRole role) {
  static constexpr std::array<std::string_view, linear_role_count> names = {
      "q", "k", "v", "o", "gate", "up", "down"};
  return names[static_cast<std::size_t>(role)];
}

const LinearSpec& linear_spec(LinearRole role) {
  const auto& spec = linear_specs[static_cast<std::size_t>(role)];
  PTQ_ASSERT(spec.role == role);
  return spec;
}

std::string linear_module_name(int layer, LinearRole role) {
  return block_tensor_name(layer, linear_spec(role).module);
}

int linear_out_features(const ModelConfig& c, LinearRole role) {
  switch (role) {
    case LinearRole::q:
      return c.num_heads * c.head_dim;
    case LinearRole::k:
    case LinearRole::v:
      return c.num_kv_heads * c.head_dim;
    case LinearRole::o:
    case LinearRole::down:
      return c.hidden_size;
    case LinearRole::gate:
    case LinearRole::up:
      return c.intermediate_size;
  }
  PTQ_ASSERT(false);
  return 0;
}

int linear_in_features(const ModelConfig& c, LinearRole role) {
  switch (linear_spec(role).input) {
    case LinearInput::attention_in:
    case LinearInput::mlp_in:
      return c.hidden_size;
    case LinearInput::attention_out:
      return c.num_heads * c.head_dim;
    case LinearInput::mlp_hidden:
      return c.intermediate_size;
  }
  PTQ_ASSERT(false);
  return 0;
}

std::int64_t block_linear_weights(const ModelConfig& c) {
  std::int64_t attention = 0, mlp = 0;
  for (LinearRole r : all_linear_roles) {
    const LinearInput input = linear_spec(r).input;
    const bool attends = input == LinearInput::attention_in || input == LinearInput::attention_out;
    (attends ? attention : mlp) +=
        std::int64_t{linear_out_features(c, r)} * linear_in_features(c, r);
  }
  if (!c.has_moe()) return attention + mlp;
  const std::int64_t experts = std::int64_t{c.moe.experts} * c.hidden_size *
                               (3 * std::int64_t{c.moe.intermediate_size} + 1);  // + router row
  return attention + std::max(mlp, experts);
}

std::vector<LinearKey> block_linears(const ModelConfig& c, int layer) {
  std::vector<LinearKey> keys;
  for (LinearRole role : all_linear_roles) {
    const LinearInput input = linear_spec(role).input;
    if (c.is_moe(layer) && (input == LinearInput::mlp_in || input == LinearInput::mlp_hidden))
      continue;
    keys.push_back({layer, role});
  }
  if (!c.is_moe(layer)) return keys;
  for (int e = 0; e < c.moe.experts; ++e)
    for (LinearRole role : expert_roles) keys.push_back({layer, role, e});
  return keys;
}

std::string linear_key_text(const LinearKey& k) {
  return "layer " + std::to_string(k.layer) +
         (k.expert < 0 ? "" : " expert " + std::to_string(k.expert)) + " " +
         std::string(linear_role_name(k.role));
}

std::string linear_weight_module(const ModelConfig& c, const LinearKey& k) {
  if (k.expert < 0) return block_tensor_name(k.layer, linear_storage(c, k.role).module);
  return block_tensor_name(
      k.layer, per_expert_tensors(c, k.layer).expert_module(k.expert, expert_linear(k.role)));
}

}  // namespace ptq
