// Refinement after quantization (algorithms/refit.hpp). The least-squares
// scale refit: optimality checked from its definition (the gradient of the
// output error vanishes) and a closed form. The code sweeps: checked against a
// brute-force search of every level of every weight.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include "algorithms/gptq.hpp"
#include "algorithms/refit.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

// d/ds_g of (w - w')^T H (w - w') for row r, over the columns of group g:
// -2 sum_{c in g} v_c (H (w - w'))_c, with v_c = q_c - z_g. Relative to |H w|.
double relative_gradient(const QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H,
                         int r, int g) {
  const Eigen::VectorXd w = W.row(r).transpose().cast<double>();
  const Eigen::VectorXd wq = q.dequantize().row(r).transpose().cast<double>();
  const Eigen::VectorXd He = H * (w - wq);
  double grad = 0, scale = 0;
  for (int c = 0; c < q.columns(); ++c) {
    if (q.g_idx[c] != g) continue;
    const double v = q.codes(r, c) - q.zeros(r, g);
    grad += v * He[c];
    scale += std::abs(v * (H * w)[c]);
  }
  return std::abs(grad) / scale;
}

// float32 scales: the optimum is met to ~1e-7 relative; the gradient relative to
// the sum of |terms| stays below this.
constexpr double kGradientTolerance = 1e-4;

TEST(Refit, GptqGroupsReachTheLeastSquaresOptimum) {
  const MatrixRM W = test::random_weights(16, 192, 51);
  const Eigen::MatrixXd H = test::correlated_hessian(192, 400, 52, {7});
  GptqConfig config;
  config.spec = QuantSpec{3, Symmetry::Asymmetric, Granularity::Group, 64};
  config.order = ColumnOrder::ActivationOrder;  // dynamic: groups are not contiguous
  QuantizedMatrix q = gptq_quantize(W, H, config).quantized;
  const QuantizedMatrix before = q;
  refit_scales(q, W, H);
  EXPECT_EQ(q.codes, before.codes);
  EXPECT_EQ(q.zeros, before.zeros);
  EXPECT_LE(output_error(W, q.dequantize(), H), output_error(W, before.dequantize(), H));
  for (int r = 0; r < 16; ++r)
    for (int g = 0; g < 3; ++g) EXPECT_LT(relative_gradient(q, W, H, r, g), kGradientTolerance) << r << "," << g;
}

TEST(Refit, OneGroupPerRowIsTheClosedForm) {
  // One grid per row: s* = v^T H w / v^T H v.
  const MatrixRM W = test::random_weights(8, 96, 53);
  const Eigen::MatrixXd H = test::correlated_hessian(96, 300, 54);
  QuantizedMatrix q = rtn_quantize(W, QuantSpec{4, Symmetry::Asymmetric, Granularity::Channel, 0});
  refit_scales(q, W, H);
  for (int r = 0; r < 8; ++r) {
    Eigen::VectorXd v(96);
    for (int c = 0; c < 96; ++c) v[c] = q.codes(r, c) - q.zeros(r, 0);
    const Eigen::VectorXd w = W.row(r).transpose().cast<double>();
    const double expected = v.dot(H * w) / v.dot(H * v);
    EXPECT_NEAR(q.scales(r, 0), expected, 1e-6 * expected) << r;
  }
}

// Row r's output error (w - w')^T H (w - w'), from the dequantized matrix.
double row_error(const QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H, int r) {
  const Eigen::VectorXd e =
      W.row(r).transpose().cast<double>() - q.dequantize().row(r).transpose().cast<double>();
  return e.dot(H * e);
}

struct SweepCase {
  MatrixRM W = test::random_weights(12, 160, 61);
  Eigen::MatrixXd H = test::correlated_hessian(160, 300, 62, {5, 90});
  QuantizedMatrix gptq() const {
    GptqConfig config;
    config.spec = QuantSpec{3, Symmetry::Asymmetric, Granularity::Group, 32};
    return gptq_quantize(W, H, config).quantized;
  }
};

// The sweeps move codes only, lower every row's error below GPTQ's, and stop
// at a point no single weight can leave downhill: each weight's level is the
// best of all its grid's levels with the row's others held (found here by
// trying every level and computing the error afresh).
TEST(CodeSweeps, EndWhereNoSingleLevelLowersTheError) {
  const SweepCase data;
  const QuantizedMatrix before = data.gptq();
  QuantizedMatrix q = before;
  const std::int64_t moved = descend_codes(q, data.W, data.H, 50);
  EXPECT_GT(moved, 0);
  EXPECT_EQ(q.scales, before.scales);
  EXPECT_EQ(q.zeros, before.zeros);
  EXPECT_EQ(descend_codes(q, data.W, data.H, 1), 0);  // converged: a further sweep moves nothing
  for (int r = 0; r < q.rows(); ++r) {
    const double error = row_error(q, data.W, data.H, r);
    EXPECT_LT(error, row_error(before, data.W, data.H, r)) << r;
    for (int c = 0; c < q.columns(); c += 7) {
      QuantizedMatrix other = q;
      for (int level = 0; level <= q.spec.maxq(); ++level) {
        other.codes(r, c) = static_cast<std::uint8_t>(level);
        EXPECT_GE(row_error(other, data.W, data.H, r), error * (1 - 1e-12))
            << "row " << r << " column " << c << " level " << level;
      }
    }
  }
}

// Each sweep can only lower the error: one sweep, then more, never above the one before.
TEST(CodeSweeps, EachSweepLowersTheErrorAndTheThreadCountChangesNothing) {
  const SweepCase data;
  QuantizedMatrix q = data.gptq();
  double last = output_error(data.W, q.dequantize(), data.H);
  for (int sweep = 0; sweep < 4; ++sweep) {
    descend_codes(q, data.W, data.H, 1);
    const double now = output_error(data.W, q.dequantize(), data.H);
    EXPECT_LE(now, last) << sweep;
    last = now;
  }
  const auto run = [&](int threads) {
    const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    QuantizedMatrix copy = data.gptq();
    descend_codes(copy, data.W, data.H, 4);
    return copy.codes;
  };
  EXPECT_EQ(run(1), run(3));
}

TEST(CodeSweeps, ShapesThatDisagreeAreRefusedByName) {
  const SweepCase data;
  QuantizedMatrix q = data.gptq();
  try {
    descend_codes(q, data.W, Eigen::MatrixXd::Identity(8, 8), 1);
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("descend_codes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ptq
