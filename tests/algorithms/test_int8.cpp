// Int8 fake quantization (W8A8) against a plain scalar loop of the reference
// formula, bit for bit, and its error bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "algorithms/int8.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

// scale = max(absmax, 1e-5) / 127, x' = nearbyint(x / scale) * scale, one element at a time.
float scalar_scale(const float* x, Eigen::Index n) {
  float m = 0.0f;
  for (Eigen::Index i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return std::max(m, 1e-5f) / 127.0f;
}

TEST(Int8, WeightRowsMatchScalarReference) {
  MatrixRM W = test::random_weights(23, 70, 3);
  W.row(5).setZero();  // an all-zero row takes the 1e-5 floor, never a zero scale
  const QuantizedMatrix q = int8_quantize_rows(W);
  const MatrixRM deq = q.dequantize();
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    const float scale = scalar_scale(&W(r, 0), W.cols());
    EXPECT_EQ(q.scales(r, 0), scale);
    for (Eigen::Index c = 0; c < W.cols(); ++c) {
      const float code = std::nearbyint(W(r, c) / scale);
      EXPECT_EQ(deq(r, c), code * scale) << r << "," << c;
      EXPECT_LE(std::fabs(code), 127.0f);
      EXPECT_LE(std::fabs(W(r, c) - deq(r, c)), 0.5f * scale * (1 + 1e-6f));
    }
  }
  EXPECT_EQ(q.spec.bits, 8);
  EXPECT_EQ(q.codes.row(5).cast<int>().maxCoeff(), 128);
}

TEST(Int8, PerTokenActivationsMatchScalarReference) {
  const MatrixRM x0 = 10.0f * test::random_weights(9, 300, 5);
  MatrixRM x = x0;
  fake_quant_int8_rows(x);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float scale = scalar_scale(&x0(r, 0), x0.cols());
    for (Eigen::Index c = 0; c < x.cols(); ++c) EXPECT_EQ(x(r, c), std::nearbyint(x0(r, c) / scale) * scale);
    // The token's absmax maps to the top code, so it is kept to within float rounding.
    EXPECT_NEAR(x.row(r).cwiseAbs().maxCoeff(), x0.row(r).cwiseAbs().maxCoeff(), 1e-5f * 127 * scale);
  }
}

TEST(Int8, PerTensorSaturatesBeyondTheStaticScale) {
  MatrixRM x(1, 4);
  x << 0.26f, -0.74f, 5.0f, -9.0f;
  const float scale = 0.5f / 127.0f;
  fake_quant_int8_tensor(x, scale);
  EXPECT_EQ(x(0, 0), std::nearbyint(0.26f / scale) * scale);
  EXPECT_EQ(x(0, 1), -127.0f * scale);
  EXPECT_EQ(x(0, 2), 127.0f * scale);
  EXPECT_EQ(x(0, 3), -127.0f * scale);
}

}  // namespace
}  // namespace ptq
