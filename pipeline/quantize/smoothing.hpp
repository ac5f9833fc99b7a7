#pragma once
// Scales folded into a block before rounding (pipeline/output/block_scales.hpp):
// applying them, the norms they leave, and SmoothQuant's migration scales.
// SmoothQuant's BlockScales follow the two norms (input_norm -> q/k/v,
// post_attention_norm -> gate/up) and have no clips, so they are folded, saved
// and replayed exactly as AWQ's are. o and down are not smoothed, as in the
// reference for Llama (mit-han-lab/smoothquant smooth.py).
#include <array>

#include "algorithms/smoothquant.hpp"
#include "calibrate/act_quant.hpp"
#include "calibrate/quantile_sketch.hpp"
#include "pipeline/output/block_scales.hpp"

namespace ptq {

class Model;

// Folds one group's scales into w: the op at g.site divides its output
// channels by them, the Linears reading it multiply their input columns.
void fold_scale_group(BlockWeights& w, const ScaleGroup& g);
// Those matrices: the site's Linears; in a mixture layer, post_attention_norm's
// scales go to every expert's gate and up and to the float router, an expert's
// up site's (`expert` >= 0) to its down.
std::vector<MatrixRM*> scaled_weights(BlockWeights& w, FoldSite site, int expert);

// Folds the scales, then the clips, into w (output-invariant before rounding,
// except for the clips). `spec` gives the clip groups.
void apply_block_scales(BlockWeights& w, const BlockScales& block, const QuantSpec& spec);

// The float tensors the folded scales change, as they leave them (checkpoint
// name, float32 values in the checkpoint's order): the norms, and a mixture
// layer's router. Linear weights are written from their quantized form.
struct FoldedTensor {
  std::string name;
  VectorF values;
};
std::vector<FoldedTensor> folded_tensors(const Model& model, std::span<const BlockScales> blocks);

// Per-channel absmax (and, for percentiles, a sketch of |x|) of each block input.
class InputRanges : public LinearObserver {
 public:
  explicit InputRanges(bool with_sketch) : with_sketch_(with_sketch) {}
  void observe(int layer, std::span<const LinearRole> roles, const MatrixRM& x) override;
  // A mixture layer: each expert's down input over its routed tokens joins the
  // range of the block's down input (one int8 scale serves every expert).
  bool observes_experts() const override { return true; }
  void observe_expert(int layer, int expert, std::span<const LinearRole> roles, ExpertTokens tokens,
                      const MatrixRM& x) override;
  const Eigen::VectorXf& absmax(LinearInput input) const { return absmax_[static_cast<std::size_t>(input)]; }
  // The magnitude below which `percentile` % of the input's values lie (100: the absmax).
  float magnitude(LinearInput input, double percentile) const;

 private:
  bool with_sketch_;
  std::array<Eigen::VectorXf, linear_input_count> absmax_;
  std::array<QuantileSketch, linear_input_count> sketch_;
};

// The SmoothQuant scales of block `w` from the absmax of its normed inputs over
// x (one pass of the block; with StreamUpdate::advance, x becomes the block's float output).
// Each group's ratio records alpha; its loss is 0 (there is no search).
BlockScales smoothquant_block(const ModelConfig& config, const BlockWeights& w, MatrixRM& x, int seq_len,
                           int batch, const SmoothQuantConfig& smoothing, StreamUpdate update);

}  // namespace ptq
