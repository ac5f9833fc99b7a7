#pragma once
// Simulated int8 activations for W8A8 models: every Linear input is rounded to
// int8 before the matmul (the Linear's output is not). Plugged into the forward
// as a LinearInputTransform, so `ptq eval` measures a W8A8 model as it would run.
#include <array>
#include <vector>

#include "calibrate/block.hpp"

namespace ptq {

// Dynamic: one scale per token, from that token's absmax. Static: one scale per
// tensor (per layer and Linear input), fixed at quantization time.
enum class ActGranularity { Token, Tensor };

std::string_view act_granularity_name(ActGranularity g);  // "token" | "tensor"

inline constexpr int linear_input_count = 4;  // LinearInput values
using InputScales = std::array<float, linear_input_count>;  // indexed by LinearInput

struct ActivationQuant {
  ActGranularity granularity = ActGranularity::Token;
  std::vector<InputScales> static_scales;  // [layers], Tensor only: x' = round(x / s) * s

  void validate(int num_layers) const;  // InputError: missing or non-positive static scales
};

class Int8Activations : public LinearInputTransform {
 public:
  explicit Int8Activations(ActivationQuant scheme) : scheme_(std::move(scheme)) {}
  void apply(int layer, std::span<const LinearRole> roles, MatrixRM& x) const override;

 private:
  ActivationQuant scheme_;
};

}  // namespace ptq
