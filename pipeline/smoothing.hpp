#pragma once
// SmoothQuant's scale migration for one decoder block, in the form every folded
// scaling takes in ptq: an AwqBlock whose scale groups follow the two norms
// (input_norm -> q/k/v, post_attention_norm -> gate/up) and which has no clips.
// So it is folded by awq_apply_block, saved under awq/ in quantized.h5 and
// replayed by --load-scales exactly as AWQ's scales are. o and down are not
// smoothed, as in the reference for Llama (mit-han-lab/smoothquant smooth.py).
#include <array>

#include "algorithms/smoothquant.hpp"
#include "calibrate/act_quant.hpp"
#include "calibrate/quantile_sketch.hpp"
#include "pipeline/awq.hpp"

namespace ptq {

// Per-channel absmax (and, for percentiles, a sketch of |x|) of each block input.
class InputRanges : public LinearObserver {
 public:
  explicit InputRanges(bool with_sketch) : with_sketch_(with_sketch) {}
  void observe(int layer, std::span<const LinearRole> roles, const RowMatrix& x) override;
  const Eigen::VectorXf& absmax(LinearInput input) const { return absmax_[static_cast<std::size_t>(input)]; }
  // The magnitude below which `percentile` % of the input's values lie (100: the absmax).
  float magnitude(LinearInput input, double percentile) const;

 private:
  bool with_sketch_;
  std::array<Eigen::VectorXf, linear_input_count> absmax_;
  std::array<QuantileSketch, linear_input_count> sketch_;
};

// The SmoothQuant scales of block `w` from the absmax of its normed inputs over
// x (one pass of the block; with `advance`, x becomes the block's float output).
// Each group's ratio records alpha; its loss is 0 (there is no search).
AwqBlock smoothquant_block(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len,
                           int batch, const SmoothQuantConfig& smoothing, bool advance);

}  // namespace ptq
