#include "io/moe_tensors.hpp"

#include "io/error.hpp"

namespace ptq {

std::string block_tensor_name(int layer, std::string_view suffix) {
  return "model.layers." + std::to_string(layer) + "." + std::string(suffix);
}

std::string MoeTensors::expert_module(int expert, ExpertLinear linear) const {
  PTQ_ASSERT(!stacked);
  std::string_view name;
  switch (linear) {
    case ExpertLinear::gate:
      name = mixtral_names ? "w1" : "gate_proj";
      break;
    case ExpertLinear::up:
      name = mixtral_names ? "w3" : "up_proj";
      break;
    case ExpertLinear::down:
      name = mixtral_names ? "w2" : "down_proj";
      break;
  }
  return std::string(experts_prefix) + std::to_string(expert) + "." + std::string(name);
}

MoeTensors moe_tensors(const ModelConfig& c, int layer,
                       const std::function<bool(const std::string&)>& has_tensor) {
  MoeTensors t;
  t.stacked = has_tensor(block_tensor_name(layer, stacked_gate_up_suffix));
  const bool mixtral_v4 = c.arch == Architecture::Mixtral && !t.stacked;
  t.router = block_tensor_name(layer, mixtral_v4 ? "block_sparse_moe.gate" : "mlp.gate");
  t.experts_prefix = mixtral_v4 ? "block_sparse_moe.experts." : "mlp.experts.";
  t.mixtral_names = mixtral_v4;
  return t;
}

MoeTensors per_expert_tensors(const ModelConfig& c, int layer) {
  return moe_tensors(c, layer, [](const std::string&) { return false; });
}

std::array<std::int64_t, 2> expert_shape(const ModelConfig& c, ExpertLinear linear) {
  const std::int64_t hidden = c.hidden_size, inter = c.moe.intermediate_size;
  return linear == ExpertLinear::down ? std::array{hidden, inter} : std::array{inter, hidden};
}

ExpertRows expert_rows(const ModelConfig& c, int layer, const MoeTensors& names, int expert,
                       ExpertLinear linear) {
  if (!names.stacked)
    return {block_tensor_name(layer, names.expert_module(expert, linear)) + ".weight", 0};
  const std::int64_t inter = c.moe.intermediate_size, e = expert;
  switch (linear) {
    case ExpertLinear::gate:
      return {block_tensor_name(layer, stacked_gate_up_suffix), 2 * e * inter};
    case ExpertLinear::up:
      return {block_tensor_name(layer, stacked_gate_up_suffix), (2 * e + 1) * inter};
    case ExpertLinear::down:
      return {block_tensor_name(layer, stacked_down_suffix), e * c.hidden_size};
  }
  PTQ_ASSERT(false);
}

std::vector<ExpectedTensor> moe_source_tensors(const ModelConfig& c, int layer,
                                               const MoeTensors& names) {
  const std::int64_t experts = c.moe.experts, hidden = c.hidden_size;
  const std::int64_t inter = c.moe.intermediate_size;
  std::vector<ExpectedTensor> out = {{names.router + ".weight", {experts, hidden}}};
  if (names.stacked) {
    out.push_back({block_tensor_name(layer, stacked_gate_up_suffix), {experts, 2 * inter, hidden}});
    out.push_back({block_tensor_name(layer, stacked_down_suffix), {experts, hidden, inter}});
    return out;
  }
  for (int e = 0; e < experts; ++e) {
    for (ExpertLinear linear : all_expert_linears) {
      const std::array<std::int64_t, 2> shape = expert_shape(c, linear);
      out.push_back({expert_rows(c, layer, names, e, linear).tensor, {shape[0], shape[1]}});
    }
  }
  return out;
}

}  // namespace ptq
