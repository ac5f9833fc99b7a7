// RTN against the plain scalar loop of scalar_reference.cpp, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

QuantSpec make_spec(int bits, Symmetry symmetry, Granularity granularity, int group_size = 128) {
  QuantSpec spec;
  spec.bits = bits;
  spec.symmetry = symmetry;
  spec.granularity = granularity;
  spec.group_size = group_size;
  return spec;
}

class RtnMatchesReference : public ::testing::TestWithParam<QuantSpec> {};

TEST_P(RtnMatchesReference, BitExact) {
  const QuantSpec spec = GetParam();
  const MatrixRM W = test::random_weights(37, 200, 11);  // 200 = 128 + 72: a partial group
  const QuantizedMatrix q = rtn_quantize(W, spec);
  const test::ReferenceResult ref = test::rtn_reference(W, spec);
  EXPECT_EQ(q.codes.cast<int>(), ref.codes);
  EXPECT_EQ(q.scales.cast<double>(), ref.scales);
  EXPECT_EQ(q.zeros.cast<double>(), ref.zeros);
  EXPECT_EQ(q.g_idx, ref.g_idx);
  EXPECT_EQ(q.dequantize().cast<double>(), ref.Q);
  EXPECT_LE(q.codes.maxCoeff(), spec.maxq());
}

TEST_P(RtnMatchesReference, ErrorWithinOneStep) {
  const QuantSpec spec = GetParam();
  MatrixRM W = test::random_weights(37, 200, 12);
  // The bound needs a negative weight in every group: the reference mirrors
  // only negative minima, so a symmetric group without one keeps xmin = 0 yet
  // is centred at (maxq + 1) / 2 and its top weights clamp far from the grid.
  // Every group starts at a multiple of 8, so this gives each group one.
  for (Eigen::Index c = 0; c < W.cols(); c += 8) W.col(c) = -W.col(c).cwiseAbs();
  const QuantizedMatrix q = rtn_quantize(W, spec);
  const MatrixRM err = (W - q.dequantize()).cwiseAbs();
  // Every weight lies inside its grid's range; the rounded zero point shifts
  // the grid by at most half a step, so no weight is further than one step.
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    for (Eigen::Index c = 0; c < W.cols(); ++c) {
      ASSERT_LE(err(r, c), q.scales(r, q.g_idx[c]) * 1.0001f) << r << ", " << c;
    }
  }
  EXPECT_NEAR(weight_mse(W, q.dequantize()), err.cast<double>().squaredNorm() / W.size(), 1e-15);
}

INSTANTIATE_TEST_SUITE_P(
    Specs, RtnMatchesReference,
    ::testing::Values(make_spec(8, Symmetry::Asymmetric, Granularity::Channel),
                      make_spec(4, Symmetry::Asymmetric, Granularity::Channel),
                      make_spec(4, Symmetry::Symmetric, Granularity::Channel),
                      make_spec(4, Symmetry::Asymmetric, Granularity::Group),
                      make_spec(3, Symmetry::Asymmetric, Granularity::Group),
                      make_spec(3, Symmetry::Symmetric, Granularity::Group, 48),
                      make_spec(2, Symmetry::Asymmetric, Granularity::Group, 32),
                      make_spec(4, Symmetry::Asymmetric, Granularity::Tensor),
                      make_spec(2, Symmetry::Symmetric, Granularity::Tensor)));

TEST(Rtn, FourBitsBeatTwoBits) {
  const MatrixRM W = test::random_weights(64, 256, 13);
  const double mse4 = weight_mse(
      W, rtn_quantize(W, make_spec(4, Symmetry::Asymmetric, Granularity::Group)).dequantize());
  const double mse2 = weight_mse(
      W, rtn_quantize(W, make_spec(2, Symmetry::Asymmetric, Granularity::Group)).dequantize());
  EXPECT_LT(mse4 * 10, mse2);
}

TEST(Rtn, NonFiniteWeightIsAnInputError) {
  MatrixRM W = test::random_weights(4, 8, 1);
  W(2, 5) = std::numeric_limits<float>::quiet_NaN();
  try {
    rtn_quantize(W, QuantSpec{});
    FAIL() << "NaN accepted";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rtn_quantize: W: expected finite weights"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 5]"), std::string::npos) << msg;
  }
  EXPECT_THROW(rtn_quantize(MatrixRM(0, 8), QuantSpec{}), InputError);
  EXPECT_THROW(rtn_quantize(W, make_spec(1, Symmetry::Asymmetric, Granularity::Channel)),
               InputError);
}

}  // namespace
}  // namespace ptq
