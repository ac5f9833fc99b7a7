#include "pipeline/smoothing.hpp"

#include <utility>

namespace ptq {

void InputRanges::observe(int, std::span<const LinearRole> roles, const RowMatrix& x) {
  const auto i = static_cast<std::size_t>(linear_spec(roles.front()).input);
  const Eigen::VectorXf m = x.cwiseAbs().colwise().maxCoeff().transpose();
  absmax_[i] = absmax_[i].size() == 0 ? m : absmax_[i].cwiseMax(m);
  if (with_sketch_) sketch_[i].add(std::span(x.data(), static_cast<std::size_t>(x.size())));
}

float InputRanges::magnitude(LinearInput input, double percentile) const {
  if (percentile >= 100.0) return absmax(input).maxCoeff();
  return static_cast<float>(sketch_[static_cast<std::size_t>(input)].quantile(percentile / 100.0));
}

AwqBlock smoothquant_block(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len,
                           int batch, const SmoothQuantConfig& smoothing, bool advance) {
  InputRanges ranges(false);
  forward_windows(config, w, x, {seq_len, batch, {}}, &ranges, advance);
  AwqBlock out{w.layer, {}, {}};
  const std::pair<AwqPrevOp, LinearInput> groups[] = {{AwqPrevOp::input_norm, LinearInput::attention_in},
                                                      {AwqPrevOp::post_attention_norm, LinearInput::mlp_in}};
  for (const auto& [prev, input] : groups) {
    std::vector<const MatrixRM*> weights;
    for (LinearRole role : awq_scaled_roles(prev)) weights.push_back(&w.weight(role));
    const Eigen::VectorXf s = smoothing_scales(ranges.absmax(input), weights, smoothing);
    out.scales.push_back({prev, s, static_cast<float>(smoothing.alpha), 0.0});
  }
  return out;
}

}  // namespace ptq
