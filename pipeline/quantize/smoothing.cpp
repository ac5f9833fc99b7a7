#include "pipeline/quantize/smoothing.hpp"

#include <utility>

#include "algorithms/awq.hpp"
#include "calibrate/model.hpp"
#include "io/safetensors.hpp"

namespace ptq {

std::vector<MatrixRM*> scaled_weights(BlockWeights& w, FoldSite site, int expert) {
  if (expert >= 0) return {&w.experts.at(static_cast<std::size_t>(expert)).down};
  std::vector<MatrixRM*> out;
  if (site == FoldSite::post_attention_norm && !w.experts.empty()) {
    for (ExpertWeights& x : w.experts) {
      out.push_back(&x.gate);
      out.push_back(&x.up);
    }
    out.push_back(&w.router);
    return out;
  }
  for (LinearRole role : scaled_roles(site)) out.push_back(&w.weight(role));
  return out;
}

void fold_scale_group(BlockWeights& w, const ScaleGroup& g) {
  const std::vector<MatrixRM*> scaled = scaled_weights(w, g.site, g.expert);
  if (const std::optional<NormRole> norm = folded_norm(g.site)) {
    // A norm in front: SmoothQuant's fold (algorithms/smoothquant.hpp).
    fold_smoothing(g.scales, w.norm(*norm), scaled);
    return;
  }
  const auto s = g.scales.array();
  // The last rows of the previous Linear feed the scaled inputs (llm-awq scale_fc_fc).
  if (g.expert >= 0) {
    w.experts.at(static_cast<std::size_t>(g.expert)).up.bottomRows(s.size()).array().colwise() /= s;
  } else {
    const LinearRole prev = folded_linear(g.site);
    w.weight(prev).bottomRows(s.size()).array().colwise() /= s;
    auto& bias = w.bias[static_cast<std::size_t>(prev)];
    if (bias.size() > 0) bias.tail(s.size()).array() /= s;
  }
  for (MatrixRM* weight : scaled) weight->array().rowwise() *= s.transpose();
}

void apply_block_scales(BlockWeights& w, const BlockScales& block, const QuantSpec& spec) {
  for (const ScaleGroup& g : block.scales) fold_scale_group(w, g);
  for (const WeightClip& c : block.clips) {
    awq_apply_clip(w.weight(LinearKey{w.layer, c.role, c.expert}), c.max_val, spec);
  }
}

std::vector<FoldedTensor> folded_tensors(const Model& model, std::span<const BlockScales> blocks) {
  std::vector<FoldedTensor> out;
  const ModelConfig& c = model.config();
  const Checkpoint checkpoint = Checkpoint::open(model.path());
  for (const BlockScales& block : blocks) {
    const BlockWeights w = model.load_block(block.layer);
    // The tensor as the checkpoint stores it: Gemma's w, of which the forward uses 1 + w.
    const float offset = c.norm_plus_one ? 1.0f : 0.0f;
    for (const ScaleGroup& g : block.scales) {
      const std::optional<NormRole> norm = folded_norm(g.site);
      if (!norm) continue;
      out.push_back({block_tensor_name(block.layer, norm_tensor_suffix(c, *norm)),
                     w.norm(*norm).array() / g.scales.array() - offset});
      if (w.router.size() == 0 || *norm != NormRole::post_attention) continue;
      const MatrixRM router = w.router.array().rowwise() * g.scales.transpose().array();
      const MoeTensors names = moe_tensors(c, block.layer, [&](const std::string& name) {
        return checkpoint.find(name) != nullptr;
      });
      out.push_back(
          {names.router + ".weight", Eigen::Map<const VectorF>(router.data(), router.size())});
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

void InputRanges::observe_expert(int layer, int, std::span<const LinearRole> roles,
                                 ExpertTokens tokens, const MatrixRM& x) {
  // The gate/up input is every token's MLP input, seen by observe().
  if (tokens == ExpertTokens::routed && linear_spec(roles.front()).input == LinearInput::mlp_hidden)
    observe(layer, roles, x);
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
    // A mixture layer's MLP input feeds every expert's gate and up (the router
    // stays in float: its columns only take the scales, leaving the routing).
    std::vector<const MatrixRM*> weights;
    if (site == FoldSite::post_attention_norm && !w.experts.empty())
      for (const ExpertWeights& x : w.experts) weights.insert(weights.end(), {&x.gate, &x.up});
    else
      for (LinearRole role : scaled_roles(site)) weights.push_back(&w.weight(role));
    const Eigen::VectorXf s = smoothing_scales(ranges.absmax(scaled_input(site)), weights, smoothing);
    out.scales.push_back({site, s, static_cast<float>(smoothing.alpha), 0.0});
  }
  return out;
}

}  // namespace ptq
