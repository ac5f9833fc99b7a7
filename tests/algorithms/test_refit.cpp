// Least-squares scale refit (algorithms/refit.hpp): optimality checked from
// its definition (the gradient of the output error vanishes) and a closed form.
#include <gtest/gtest.h>

#include "algorithms/gptq.hpp"
#include "algorithms/refit.hpp"
#include "algorithms/rtn.hpp"
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

}  // namespace
}  // namespace ptq
