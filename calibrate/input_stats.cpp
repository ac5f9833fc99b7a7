#include "calibrate/input_stats.hpp"

#include <algorithm>

#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {
// Rows summed in float before each double accumulation: bounds the float
// rounding of x^T x while keeping the products in fast single-precision BLAS.
constexpr Eigen::Index kRowsPerFloatSum = 2048;

// Per column, the sum of x^2 in double, added row after row (the same order,
// hence the same bits, as a column-by-column loop), but reading x along its
// rows: row-major x is contiguous there, a column walk is strided and scalar.
Eigen::VectorXd column_sum_sq(const MatrixRM& x) {
  Eigen::RowVectorXd sum = Eigen::RowVectorXd::Zero(x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) sum += x.row(r).cast<double>().cwiseAbs2();
  return sum.transpose();
}
}  // namespace

InputStats::InputStats(int in_features, StatsContent content)
    : content(content),
      absmax(Eigen::VectorXf::Zero(in_features)),
      sum_sq(Eigen::VectorXd::Zero(in_features)),
      xtx(Eigen::MatrixXd::Zero(in_features, in_features)) {}

void InputStats::add(const MatrixRM& x) {
  PTQ_ASSERT(x.cols() == in_features());
  const int n = in_features();
  // Column-major; ssyrk writes only the upper triangle, the lower one stays zero.
  Eigen::MatrixXf partial = Eigen::MatrixXf::Zero(n, n);
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += kRowsPerFloatSum) {
    const Eigen::Index rows = std::min(kRowsPerFloatSum, x.rows() - r0);
    // Chunks are summed in order; the parallelism is inside each chunk's product.
    parallel_xtx_upper(x.middleRows(r0, rows), partial);
    xtx += partial.cast<double>();
  }
  xtx.triangularView<Eigen::StrictlyLower>() = xtx.transpose().triangularView<Eigen::StrictlyLower>();
  tokens += x.rows();
  if (content == StatsContent::hessian) return;
  absmax = absmax.cwiseMax(x.cwiseAbs().colwise().maxCoeff().transpose());
  sum_sq += column_sum_sq(x);
  magnitudes.add(std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
}

void InputStats::merge(const InputStats& other) {
  PTQ_ASSERT(other.in_features() == in_features() && other.content == content);
  tokens += other.tokens;
  absmax = absmax.cwiseMax(other.absmax);
  sum_sq += other.sum_sq;
  xtx += other.xtx;
  magnitudes.merge(other.magnitudes);
}

Eigen::MatrixXd InputStats::mean_xtx() const { return xtx / static_cast<double>(std::max<std::int64_t>(tokens, 1)); }

Eigen::VectorXd InputStats::mean_square() const {
  return sum_sq / static_cast<double>(std::max<std::int64_t>(tokens, 1));
}

namespace {
std::vector<double> normalised(std::span<const double> weights) {
  double total = 0.0;
  for (double w : weights) {
    PTQ_ASSERT(w >= 0.0);
    total += w;
  }
  PTQ_ASSERT(total > 0.0);
  std::vector<double> out(weights.begin(), weights.end());
  for (double& w : out) w /= total;
  return out;
}
}  // namespace

MixedStats mix_stats(std::span<const InputStats* const> sources, std::span<const double> weights) {
  PTQ_ASSERT(!sources.empty() && sources.size() == weights.size());
  const auto w = normalised(weights);
  const int n = sources[0]->in_features();
  MixedStats mixed{Eigen::VectorXf::Zero(n), Eigen::VectorXd::Zero(n), Eigen::MatrixXd::Zero(n, n)};
  for (std::size_t s = 0; s < sources.size(); ++s) {
    PTQ_ASSERT(sources[s]->in_features() == n);
    if (w[s] == 0.0) continue;
    mixed.absmax = mixed.absmax.cwiseMax(sources[s]->absmax);
    mixed.mean_square += w[s] * sources[s]->mean_square();
    mixed.mean_xtx += w[s] * sources[s]->mean_xtx();
  }
  return mixed;
}

double mixed_quantile(std::span<const InputStats* const> sources, std::span<const double> weights,
                      double q) {
  const auto w = normalised(weights);
  std::vector<const QuantileSketch*> sketches;
  std::vector<double> per_value;
  for (std::size_t s = 0; s < sources.size(); ++s) {
    sketches.push_back(&sources[s]->magnitudes);
    const auto count = static_cast<double>(sources[s]->magnitudes.count());
    per_value.push_back(count > 0 ? w[s] / count : 0.0);
  }
  return QuantileSketch::weighted_quantile(sketches, per_value, q);
}

}  // namespace ptq
