#pragma once
// AWQ (Lin et al., "Activation-aware Weight Quantization", 2023; reference code
// mit-han-lab/llm-awq auto_scale.py and auto_clip.py) as pure searches over
// matrices. The block driver (pipeline/awq.hpp) supplies module outputs through
// a callback and folds the results into the model.
//
// Scale search: per input channel c, s_c = mean|x_c|^ratio, normalized so that
// max(s) min(s) = 1; the Linears reading x get W diag(s) (quantized) and the op
// before them is divided by s. The ratio with the smallest module output error wins.
// Clip search: per output row and group, the bound m = absmax (1 - i / n_grid)
// whose quantized, clamped weights best reproduce the group's partial outputs.
#include <functional>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"

namespace ptq {


struct AwqScaleConfig {
  int n_grid = 20;  // ratios 0, 1/n_grid, ..., (n_grid - 1)/n_grid (auto_scale.py)
  void validate() const;  // InputError naming the field
};

struct AwqScaleSearch {
  VectorF scales;              // [in] of the winning ratio
  float ratio = 0.0f;
  double loss = 0.0;           // its output error
  std::vector<double> losses;  // per ratio, for reports
};

// The module output error of candidate input scales s: [in].
using AwqLossFn = std::function<double(const VectorF& s)>;

// Mean |x| of every column of X: [tokens, in], accumulated in double.
VectorF mean_abs_columns(const MatrixRM& X);

// One ratio's candidate: s = max(act_scale^ratio, 1e-4) / sqrt(max(s) min(s)).
VectorF awq_candidate_scales(const VectorF& act_scale, float ratio);

// Q(W diag(s)) diag(s)^-1: what the search runs for candidate s (W: [out, in]).
MatrixRM awq_scaled_fake_quant(const MatrixRM& W, const VectorF& s, const QuantSpec& spec);

// Evaluates every ratio in order and keeps the first with the smallest loss.
// InputError if no loss is finite.
AwqScaleSearch awq_search_scale(const VectorF& act_scale, const AwqScaleConfig& config, const AwqLossFn& loss_of);

// Whether AWQ searches clipping bounds after its scales (llm-awq auto_clip_block).
enum class AwqClipMode { None, Search };

struct AwqClipConfig {
  int n_grid = 20;           // shrink step 1 / n_grid of the group's absmax
  double max_shrink = 0.5;   // tries shrinks i / n_grid for i < max_shrink * n_grid
  int sample_tokens = 512;   // rows of X used: every (rows / sample_tokens)-th
  void validate() const;  // InputError naming the field
};

// Rows 0, k, 2k, ... of X with k = max(1, rows / sample_tokens) (auto_clip_layer's sampling).
MatrixRM awq_sample_rows(const MatrixRM& X, int sample_tokens);

// Per row and group of W (groups from `spec`): the clip bound minimizing, over the
// rows t of X ([tokens, in], already sampled), mean_t (X_tg q_g - X_tg w_g)^2 with
// q = Q(clamp(w, -m, m)); a later bound replaces only if strictly better.
// Returns max_val: [out, groups]. Groups run in parallel; the result does not depend
// on the thread count.
MatrixRM awq_search_clip(const MatrixRM& W, const MatrixRM& X, const QuantSpec& spec, const AwqClipConfig& config);

// W = clamp(W, -m, m) per row and group, m = max_val(row, group).
void awq_apply_clip(MatrixRM& W, const MatrixRM& max_val, const QuantSpec& spec);

}  // namespace ptq
