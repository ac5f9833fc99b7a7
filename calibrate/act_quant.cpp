#include "calibrate/act_quant.hpp"

#include <string>

#include "algorithms/int8.hpp"
#include "io/error.hpp"

namespace ptq {

std::string_view act_granularity_name(ActGranularity g) {
  return g == ActGranularity::Token ? "token" : "tensor";
}

void ActivationQuant::validate(int num_layers) const {
  if (granularity == ActGranularity::Token) return;
  if (static_cast<int>(static_scales.size()) != num_layers)
    throw input_error("static activation scales", std::to_string(num_layers) + " layers",
                      std::to_string(static_scales.size()));
  for (const auto& layer : static_scales)
    for (float s : layer)
      if (!(s > 0.0f)) throw input_error("static activation scales", "positive scales", std::to_string(s));
}

void Int8Activations::apply(int layer, std::span<const LinearRole> roles, MatrixRM& x) const {
  if (scheme_.granularity == ActGranularity::Token) {
    fake_quant_int8_rows(x);
    return;
  }
  const auto input = static_cast<std::size_t>(linear_spec(roles.front()).input);
  fake_quant_int8_tensor(x, scheme_.static_scales.at(static_cast<std::size_t>(layer))[input]);
}

}  // namespace ptq
