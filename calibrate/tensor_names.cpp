#include "calibrate/tensor_names.hpp"

#include "io/error.hpp"

namespace ptq {

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

std::string block_tensor_name(int layer, std::string_view suffix) {
  return "model.layers." + std::to_string(layer) + "." + std::string(suffix);
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
  std::int64_t n = 0;
  for (LinearRole r : all_linear_roles)
    n += std::int64_t{linear_out_features(c, r)} * linear_in_features(c, r);
  return n;
}

}  // namespace ptq
