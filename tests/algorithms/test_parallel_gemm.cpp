// parallel_gemm and parallel_xtx_upper against a double-precision scalar
// product, and bit-identical for one or two threads.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cstring>
#include <random>

#include "algorithms/parallel_gemm.hpp"

namespace ptq {
namespace {

// float32 products of length <= 300 over values in [-1, 1]: rounding stays far
// below this (the sum of |terms| is at most 300, times ~6e-8 per step).
constexpr double kFloatSumTolerance = 1e-3;

MatrixRM random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MatrixRM m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = u(rng);
  return m;
}

// Scalar reference: sum_k a(i, k) * b(k, j) in double.
Eigen::MatrixXd scalar_product(const MatrixRM& a, const MatrixRM& b_kn) {
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(a.rows(), b_kn.cols());
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < b_kn.cols(); ++j)
      for (Eigen::Index k = 0; k < a.cols(); ++k) c(i, j) += double(a(i, k)) * b_kn(k, j);
  return c;
}

bool same_bits(const MatrixRM& x, const MatrixRM& y) {
  return x.rows() == y.rows() && x.cols() == y.cols() &&
         std::memcmp(x.data(), y.data(), sizeof(float) * x.size()) == 0;
}

// m and n cross tile boundaries (partial last tiles in both directions).
constexpr Eigen::Index kM = gemm_tile_rows * 2 + 37, kN = gemm_tile_cols + 75, kK = 300;

TEST(ParallelGemm, MatchesScalarProductBothLayoutsAndModes) {
  std::mt19937 rng(7);
  const MatrixRM a = random_matrix(kM, kK, rng), b = random_matrix(kK, kN, rng);
  const MatrixRM bt = b.transpose();
  const MatrixRM c0 = random_matrix(kM, kN, rng);
  const Eigen::MatrixXd expected = scalar_product(a, b);
  MatrixRM plain(kM, kN), transposed(kM, kN), accumulated = c0;
  parallel_gemm(a, b, GemmOp::plain, plain, GemmOutput::overwrite);
  parallel_gemm(a, bt, GemmOp::transposed, transposed, GemmOutput::overwrite);
  parallel_gemm(a, bt, GemmOp::transposed, accumulated, GemmOutput::accumulate);
  EXPECT_LT((plain.cast<double>() - expected).cwiseAbs().maxCoeff(), kFloatSumTolerance);
  EXPECT_LT((transposed.cast<double>() - expected).cwiseAbs().maxCoeff(), kFloatSumTolerance);
  EXPECT_LT((accumulated.cast<double>() - c0.cast<double>() - expected).cwiseAbs().maxCoeff(),
            kFloatSumTolerance);
}

TEST(ParallelGemm, SameBitsForOneOrTwoThreads) {
  std::mt19937 rng(8);
  const MatrixRM a = random_matrix(kM, kK, rng), bt = random_matrix(kN, kK, rng);
  const auto run = [&](int threads) {
    const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    MatrixRM c(kM, kN);
    parallel_gemm(a, bt, GemmOp::transposed, c, GemmOutput::overwrite);
    return c;
  };
  EXPECT_TRUE(same_bits(run(1), run(2)));
}

TEST(ParallelXtx, UpperTriangleMatchesScalarAndIsThreadIndependent) {
  std::mt19937 rng(9);
  const Eigen::Index n = syrk_tile_cols * 2 + 19;
  const MatrixRM x = random_matrix(kK, n, rng);
  const Eigen::MatrixXd expected = scalar_product(x.transpose(), x);
  const auto run = [&](int threads) {
    const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    Eigen::MatrixXf upper = Eigen::MatrixXf::Constant(n, n, -1.0f);
    parallel_xtx_upper(x, upper);
    return upper;
  };
  const Eigen::MatrixXf one = run(1), two = run(2);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), sizeof(float) * one.size()), 0);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) {
      if (i <= j) {
        ASSERT_NEAR(one(i, j), expected(i, j), kFloatSumTolerance) << i << ", " << j;
      } else {
        ASSERT_EQ(one(i, j), -1.0f) << "strictly lower triangle written at " << i << ", " << j;
      }
    }
  }
}

}  // namespace
}  // namespace ptq
