#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "calibrate/input_stats.hpp"
#include "calibrate/quantile_sketch.hpp"

namespace ptq {
namespace {

// Half the bucket width: the sketch's documented worst-case relative error.
constexpr double kSketchRelError = 0.5 / (1 << QuantileSketch::kMantissaBits) + 1e-9;

std::vector<float> heavy_tailed(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::lognormal_distribution<float> mag(0.0f, 1.5f);
  std::bernoulli_distribution sign(0.5);
  std::vector<float> v(n);
  for (auto& x : v) x = sign(gen) ? mag(gen) : -mag(gen);
  return v;
}

TEST(QuantileSketch, QuantilesMatchExactOrderStatistics) {
  const auto values = heavy_tailed(200000, 1);
  QuantileSketch sketch;
  sketch.add(values);
  std::vector<float> mags(values.size());
  std::transform(values.begin(), values.end(), mags.begin(), [](float x) { return std::fabs(x); });
  std::sort(mags.begin(), mags.end());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const auto rank = static_cast<std::size_t>(std::ceil(q * mags.size()));
    const double exact = mags[rank - 1];
    EXPECT_NEAR(sketch.quantile(q), exact, kSketchRelError * exact) << "q=" << q;
  }
}

TEST(QuantileSketch, MergeEqualsOneSketchOfAllData) {
  const auto values = heavy_tailed(50000, 2);
  QuantileSketch all, a, b;
  all.add(values);
  a.add(std::span(values).first(12345));
  b.add(std::span(values).subspan(12345));
  a.merge(b);
  EXPECT_EQ(a.counts(), all.counts());
  EXPECT_EQ(a.count(), all.count());
}

MatrixRM random_activations(int tokens, int in, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  MatrixRM x(tokens, in);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = d(gen) * (1.0f + static_cast<float>(i % in) / 8.0f);
  return x;
}

TEST(InputStats, SumsMatchADirectDoubleComputation) {
  const MatrixRM x = random_activations(3000, 24, 3);  // > one float partial-sum chunk
  InputStats s(24);
  s.add(x);
  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd expected = xd.transpose() * xd;
  EXPECT_EQ(s.tokens, 3000);
  EXPECT_LT((s.xtx - expected).cwiseAbs().maxCoeff(), 1e-5 * expected.cwiseAbs().maxCoeff());
  EXPECT_TRUE(s.xtx.isApprox(s.xtx.transpose(), 0.0));  // exactly symmetric
  EXPECT_LT((s.sum_sq - xd.cwiseAbs2().colwise().sum().transpose()).cwiseAbs().maxCoeff(), 1e-9 * s.sum_sq.maxCoeff());
  EXPECT_EQ(s.absmax, x.cwiseAbs().colwise().maxCoeff().transpose());
}

TEST(InputStats, MixWithTokenShareWeightsEqualsPooledStatistics) {
  const MatrixRM a = random_activations(700, 16, 4);
  const MatrixRM b = random_activations(300, 16, 5) * 3.0f;
  InputStats sa(16), sb(16), pooled(16);
  sa.add(a);
  sb.add(b);
  pooled.add(a);
  pooled.add(b);
  const InputStats* sources[] = {&sa, &sb};
  const double weights[] = {0.7, 0.3};  // the token shares: 700 and 300 of 1000
  const MixedStats mixed = mix_stats(sources, weights);
  EXPECT_TRUE(mixed.mean_xtx.isApprox(pooled.mean_xtx(), 1e-12));
  EXPECT_TRUE(mixed.mean_square.isApprox(pooled.mean_square(), 1e-12));
  EXPECT_EQ(mixed.absmax, pooled.absmax);
  EXPECT_DOUBLE_EQ(mixed_quantile(sources, weights, 0.999), pooled.magnitudes.quantile(0.999));
}

}  // namespace
}  // namespace ptq
