// SmoothQuant scales against the paper's formula in double, and folding
// leaves a normed Linear's output unchanged (the block-level check is in
// tests/calibrate/smooth_fold_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "algorithms/smoothquant.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

Eigen::VectorXf random_absmax(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> dist(0.0f, 2.0f);  // outlier channels, as in LLM activations
  Eigen::VectorXf v(n);
  for (int i = 0; i < n; ++i) v[i] = dist(rng);
  v[3] = 0.0f;  // a dead channel: the 1e-5 clamp keeps s positive
  return v;
}

TEST(SmoothQuant, ScalesFollowTheFormula) {
  const MatrixRM a = test::random_weights(16, 40, 1), b = test::random_weights(24, 40, 2);
  const Eigen::VectorXf act = random_absmax(40, 3);
  for (double alpha : {0.0, 0.5, 0.8, 1.0}) {
    const std::array<const MatrixRM*, 2> ws = {&a, &b};
    const Eigen::VectorXf s = smoothing_scales(act, ws, SmoothQuantConfig{alpha});
    for (int c = 0; c < 40; ++c) {
      const double w = std::max({double(a.col(c).cwiseAbs().maxCoeff()), double(b.col(c).cwiseAbs().maxCoeff()), 1e-5});
      const double expected = std::max(std::pow(double(act[c]), alpha) / std::pow(w, 1.0 - alpha), 1e-5);
      EXPECT_NEAR(s[c], expected, 1e-5 * expected) << "alpha " << alpha << " channel " << c;
    }
  }
}

TEST(SmoothQuant, FoldingKeepsNormedLinearOutputs) {
  const MatrixRM x = test::random_weights(8, 40, 4);
  MatrixRM w1 = test::random_weights(16, 40, 5), w2 = test::random_weights(12, 40, 6);
  Eigen::VectorXf norm = Eigen::VectorXf::LinSpaced(40, 0.5f, 2.0f);
  const MatrixRM y1 = (x * norm.asDiagonal()) * w1.transpose(), y2 = (x * norm.asDiagonal()) * w2.transpose();
  const std::array<const MatrixRM*, 2> read = {&w1, &w2};
  const Eigen::VectorXf s = smoothing_scales(random_absmax(40, 7), read, SmoothQuantConfig{0.8});
  const std::array<MatrixRM*, 2> write = {&w1, &w2};
  fold_smoothing(s, norm, write);
  const MatrixRM z1 = (x * norm.asDiagonal()) * w1.transpose(), z2 = (x * norm.asDiagonal()) * w2.transpose();
  EXPECT_LT((z1 - y1).cwiseAbs().maxCoeff(), 1e-4f * y1.cwiseAbs().maxCoeff());
  EXPECT_LT((z2 - y2).cwiseAbs().maxCoeff(), 1e-4f * y2.cwiseAbs().maxCoeff());
}

TEST(SmoothQuant, RejectsAlphaOutsideUnitInterval) {
  EXPECT_THROW(SmoothQuantConfig{1.5}.validate(), InputError);
  EXPECT_THROW(SmoothQuantConfig{-0.1}.validate(), InputError);
}

}  // namespace
}  // namespace ptq
