#pragma once
// Statistics of the input X [tokens, in] of one Linear (or of the Linears that
// share it, such as q/k/v): what RTN clipping, AWQ, SmoothQuant and GPTQ need.
// Everything is a sum or a count (or a max), so statistics of separate batches
// or sources merge exactly; averages are derived on demand.
#include <Eigen/Core>
#include <cstdint>
#include <span>

#include "algorithms/matrix.hpp"
#include "calibrate/quantile_sketch.hpp"

namespace ptq {

// What add() collects: everything, or only x^T x (and the token count). GPTQ
// and the scale refit need only the Hessian; skipping the per-channel passes
// and the quantile sketch saves serial work on every calibration batch.
enum class StatsContent { full, hessian };

struct InputStats {
  std::int64_t tokens = 0;
  StatsContent content = StatsContent::full;
  Eigen::VectorXf absmax;     // [in] max |x| per input channel
  Eigen::VectorXd sum_sq;     // [in] sum of x^2 per channel, in double
  Eigen::MatrixXd xtx;        // [in, in] sum of x^T x, in double (GPTQ's Hessian up to 2/N)
  QuantileSketch magnitudes;  // all |x|, pooled over channels

  InputStats() = default;
  explicit InputStats(int in_features, StatsContent content = StatsContent::full);
  int in_features() const { return static_cast<int>(xtx.rows()); }

  // x: [tokens, in]. The product x^T x is formed in float per call (one window
  // or batch) and accumulated in double, so the result depends only on the
  // order of calls, not on the thread count.
  void add(const MatrixRM& x);
  void merge(const InputStats& other);

  Eigen::MatrixXd mean_xtx() const;  // xtx / tokens
  Eigen::VectorXd mean_square() const;
};

// A mix of per-source statistics without a new forward pass: per-token
// averages are combined with the given weights (normalised to sum to 1), as if
// a share `weight` of the calibration tokens came from each source; absmax is
// the max over sources of non-zero weight. Exact for statistics of float
// activations (see docs/calibration.md for sequential quantization).
struct MixedStats {
  Eigen::VectorXf absmax;
  Eigen::VectorXd mean_square;
  Eigen::MatrixXd mean_xtx;
};
MixedStats mix_stats(std::span<const InputStats* const> sources, std::span<const double> weights);

// The q-quantile of |x| under the same mix (sketch counts weighted by weight / tokens).
double mixed_quantile(std::span<const InputStats* const> sources, std::span<const double> weights,
                      double q);

}  // namespace ptq
