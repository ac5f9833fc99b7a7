#include "pipeline/quantize/smoothing.hpp"

#include <utility>

#include "algorithms/awq.hpp"
#include "calibrate/model.hpp"

namespace ptq {

void fold_scale_group(BlockWeights& w, const ScaleGroup& g) {
  std::vector<MatrixRM*> scaled;
  for (LinearRole role : scaled_roles(g.site)) scaled.push_back(&w.weight(role));
  if (g.site == FoldSite::input_norm || g.site == FoldSite::post_attention_norm) {
    // A norm in front: SmoothQuant's fold (algorithms/smoothquant.hpp).
    fold_smoothing(g.scales, g.site == FoldSite::input_norm ? w.input_norm : w.post_attention_norm,
                   scaled);
    return;
  }
  const auto s = g.scales.array();
  const LinearRole prev = g.site == FoldSite::v ? LinearRole::v : LinearRole::up;
  // The last rows of the previous Linear feed the scaled inputs (llm-awq scale_fc_fc).
  w.weight(prev).bottomRows(s.size()).array().colwise() /= s;
  auto& bias = w.bias[static_cast<std::size_t>(prev)];
  if (bias.size() > 0) bias.tail(s.size()).array() /= s;
  for (MatrixRM* weight : scaled) weight->array().rowwise() *= s.transpose();
}

void apply_block_scales(BlockWeights& w, const BlockScales& block, const QuantSpec& spec) {
  for (const ScaleGroup& g : block.scales) fold_scale_group(w, g);
  for (const WeightClip& c : block.clips) awq_apply_clip(w.weight(c.role), c.max_val, spec);
}

std::vector<FoldedNorm> folded_norms(const Model& model, std::span<const BlockScales> blocks) {
  std::vector<FoldedNorm> out;
  for (const BlockScales& block : blocks) {
    const BlockWeights w = model.load_block(block.layer);
    // The tensor as the checkpoint stores it: Gemma's w, of which the forward uses 1 + w.
    const ModelConfig& c = model.config();
    const float offset = c.norm_plus_one ? 1.0f : 0.0f;
    for (const ScaleGroup& g : block.scales) {
      if (g.site == FoldSite::input_norm)
        out.push_back({block_tensor_name(block.layer, norm_tensor_suffix(c, NormRole::input)),
                       w.input_norm.array() / g.scales.array() - offset});
      if (g.site == FoldSite::post_attention_norm)
        out.push_back(
            {block_tensor_name(block.layer, norm_tensor_suffix(c, NormRole::post_attention)),
             w.post_attention_norm.array() / g.scales.array() - offset});
    }
  }
  return out;
}

void InputRanges::observe(int, std::span<const LinearRole> roles, const MatrixRM& x) {
  const auto i = static_cast<std::size_t>(linear_spec(roles.front()).input);
  const Eigen::VectorXf m = x.cwiseAbs().colwise().maxCoeff().transpose();
  absmax_[i] = absmax_[i].size() == 0 ? m : absmax_[i].cwiseMax(m);
  if (with_sketch_) sketch_[i].add(std::span(x.data(), static_cast<std::size_t>(x.size())));
}

float InputRanges::magnitude(LinearInput input, double percentile) const {
  if (percentile >= 100.0) return absmax(input).maxCoeff();
  return static_cast<float>(sketch_[static_cast<std::size_t>(input)].quantile(percentile / 100.0));
}

BlockScales smoothquant_block(const ModelConfig& config, const BlockWeights& w, MatrixRM& x, int seq_len,
                           int batch, const SmoothQuantConfig& smoothing, StreamUpdate update) {
  InputRanges ranges(false);
  forward_windows(config, w, x, {seq_len, batch, {}}, &ranges, update);
  BlockScales out{w.layer, {}, {}};
  for (FoldSite site : {FoldSite::input_norm, FoldSite::post_attention_norm}) {
    std::vector<const MatrixRM*> weights;
    for (LinearRole role : scaled_roles(site)) weights.push_back(&w.weight(role));
    const Eigen::VectorXf s = smoothing_scales(ranges.absmax(scaled_input(site)), weights, smoothing);
    out.scales.push_back({site, s, static_cast<float>(smoothing.alpha), 0.0});
  }
  return out;
}

}  // namespace ptq
