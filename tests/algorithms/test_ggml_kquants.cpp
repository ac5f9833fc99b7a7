// ggml's k-quants (Q2_K ... Q6_K) as grids: input errors, hand-made blocks
// decoded by the formulas of ggml's dequantize_row_*, the documented ranges of
// codes and sub-scales, and thread-count independence. Bit-exactness against
// llama-quantize is tests/formats/gguf_kquant_test.cpp's job.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "algorithms/ggml_grid.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

constexpr int kSuper = 256;
constexpr GgmlGrid kKQuants[] = {GgmlGrid::q2_k, GgmlGrid::q3_k, GgmlGrid::q4_k, GgmlGrid::q5_k,
                                 GgmlGrid::q6_k};

// float16 bit patterns of small powers of two, for hand-made blocks.
constexpr std::uint16_t kHalfQuarter = 0x3400, kHalfHalf = 0x3800, kHalfOne = 0x3C00,
                        kHalfTwo = 0x4000;

std::string name_of(GgmlGrid grid) { return std::string(ggml_grid_info(grid).name); }

std::vector<float> random_importance(int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> dist(0.0f, 1.5f);  // imatrix values span decades
  std::vector<float> v(cols);
  for (float& x : v) x = dist(rng);
  return v;
}

// Random weights plus the rows ggml treats specially: all zero, constant
// positive, constant negative, one spike.
MatrixRM test_weights(int rows, int cols, unsigned seed) {
  MatrixRM W = test::random_weights(rows, cols, seed);
  W.row(0).setZero();
  W.row(1).setConstant(0.01f);
  W.row(2).setConstant(-0.03f);
  W.row(3).setZero();
  W(3, 17) = 0.5f;
  return W;
}

TEST(GgmlKquants, RejectsBadInput) {
  for (GgmlGrid grid : kKQuants) {
    SCOPED_TRACE(name_of(grid));
    EXPECT_THROW(ggml_quantize(grid, MatrixRM::Ones(2, 128)), InputError);  // half a super-block
    EXPECT_THROW(ggml_quantize(grid, MatrixRM::Ones(2, 256), std::vector<float>(255, 1.0f)),
                 InputError);
    MatrixRM W = MatrixRM::Ones(2, 256);
    W(1, 3) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(ggml_quantize(grid, W), InputError);
    W(1, 3) = std::numeric_limits<float>::infinity();
    EXPECT_THROW(ggml_quantize(grid, W, std::vector<float>(256, 1.0f)), InputError);
  }
}

// Hand-made blocks of one row of 256 whose values are exact in float: d, dmin,
// sub-scales and codes chosen per type, the expected weight written out from
// ggml's dequantize_row_qN_K formula.
TEST(GgmlKquants, DequantizesHandMadeBlocks) {
  {
    GgmlBlocks q = make_ggml_blocks(GgmlGrid::q2_k, 1, kSuper);  // y = d*s*c - dmin*m
    q.d[0] = kHalfOne;
    q.dmin[0] = kHalfQuarter;
    for (int j = 0; j < 16; ++j) {
      q.sub_scales[j] = static_cast<std::int8_t>(j);
      q.sub_mins[j] = static_cast<std::int8_t>(15 - j);
    }
    for (int i = 0; i < kSuper; ++i) q.codes[i] = static_cast<std::int8_t>(i % 4);
    const MatrixRM W = dequantize(q);
    for (int i = 0; i < kSuper; ++i) {
      const int j = i / 16, code = i % 4;
      EXPECT_EQ(W(0, i), static_cast<float>(j * code) - 0.25f * static_cast<float>(15 - j)) << i;
    }
  }
  {
    GgmlBlocks q = make_ggml_blocks(GgmlGrid::q3_k, 1, kSuper);  // y = d*(s-32)*(c-4)
    q.d[0] = kHalfHalf;
    for (int j = 0; j < 16; ++j) q.sub_scales[j] = static_cast<std::int8_t>(32 + j - 8);
    for (int i = 0; i < kSuper; ++i) q.codes[i] = static_cast<std::int8_t>(i % 8);
    const MatrixRM W = dequantize(q);
    for (int i = 0; i < kSuper; ++i) {
      const int scale = i / 16 - 8, value = i % 8 - 4;
      EXPECT_EQ(W(0, i), 0.5f * static_cast<float>(scale * value)) << i;
    }
  }
  for (GgmlGrid grid : {GgmlGrid::q4_k, GgmlGrid::q5_k}) {  // y = d*s*c - dmin*m
    const int levels = grid == GgmlGrid::q4_k ? 16 : 32;
    GgmlBlocks q = make_ggml_blocks(grid, 1, kSuper);
    q.d[0] = kHalfTwo;
    q.dmin[0] = kHalfOne;
    for (int j = 0; j < 8; ++j) {
      q.sub_scales[j] = static_cast<std::int8_t>(j + 56);
      q.sub_mins[j] = static_cast<std::int8_t>(63 - j);
    }
    for (int i = 0; i < kSuper; ++i) q.codes[i] = static_cast<std::int8_t>(i % levels);
    const MatrixRM W = dequantize(q);
    for (int i = 0; i < kSuper; ++i) {
      const int j = i / 32, code = i % levels;
      EXPECT_EQ(W(0, i), static_cast<float>(2 * (j + 56) * code - (63 - j))) << name_of(grid) << i;
    }
  }
  {
    GgmlBlocks q = make_ggml_blocks(GgmlGrid::q6_k, 1, kSuper);  // y = d*s*(c-32), s signed
    q.d[0] = kHalfQuarter;
    const auto scale_of = [](int j) { return j % 2 ? -128 + j : 127 - j; };  // both extremes
    for (int j = 0; j < 16; ++j) q.sub_scales[j] = static_cast<std::int8_t>(scale_of(j));
    for (int i = 0; i < kSuper; ++i) q.codes[i] = static_cast<std::int8_t>(i % 64);
    const MatrixRM W = dequantize(q);
    for (int i = 0; i < kSuper; ++i) {
      EXPECT_EQ(W(0, i), 0.25f * static_cast<float>(scale_of(i / 16) * (i % 64 - 32))) << i;
    }
  }
}

struct Ranges {
  int code_max, scale_min, scale_max, min_max;  // min_max < 0: no sub_mins
};

Ranges documented_ranges(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q2_k:
      return {3, 0, 15, 15};
    case GgmlGrid::q3_k:
      return {7, 0, 63, -1};
    case GgmlGrid::q4_k:
      return {15, 0, 63, 63};
    case GgmlGrid::q5_k:
      return {31, 0, 63, 63};
    default:
      return {63, -128, 127, -1};
  }
}

TEST(GgmlKquants, CodesAndSubScalesStayInTheirDocumentedRanges) {
  const MatrixRM W = test_weights(16, 3 * kSuper, 11);
  const std::vector<float> importance = random_importance(3 * kSuper, 12);
  for (GgmlGrid grid : kKQuants) {
    for (bool with_importance : {false, true}) {
      SCOPED_TRACE(name_of(grid) + (with_importance ? " imatrix" : ""));
      const GgmlBlocks q =
          ggml_quantize(grid, W, with_importance ? importance : std::vector<float>{});
      const Ranges r = documented_ranges(grid);
      ASSERT_EQ(q.codes.size(), static_cast<std::size_t>(W.size()));
      ASSERT_EQ(q.sub_scales.size(),
                static_cast<std::size_t>(q.blocks() * ggml_grid_info(grid).sub_blocks));
      ASSERT_EQ(q.sub_mins.size(), r.min_max < 0 ? 0u : q.sub_scales.size());
      for (std::int8_t c : q.codes) ASSERT_TRUE(c >= 0 && c <= r.code_max) << int(c);
      for (std::int8_t s : q.sub_scales)
        ASSERT_TRUE(s >= r.scale_min && s <= r.scale_max) << int(s);
      for (std::int8_t m : q.sub_mins) ASSERT_TRUE(m >= 0 && m <= r.min_max) << int(m);
    }
  }
}

// The zero row dequantizes to exact zeros; Q6_K zeroes such a block entirely
// (quantize_row_q6_K_ref's GROUP_MAX_EPS branch).
TEST(GgmlKquants, ZeroRowsStayZero) {
  const MatrixRM W = test_weights(4, kSuper, 13);
  for (GgmlGrid grid : kKQuants) {
    SCOPED_TRACE(name_of(grid));
    const GgmlBlocks q = ggml_quantize(grid, W);
    EXPECT_TRUE((dequantize(q).row(0).array() == 0.0f).all());
    if (grid == GgmlGrid::q6_k) {
      EXPECT_EQ(q.d[0], 0);
      for (int i = 0; i < kSuper; ++i) ASSERT_EQ(q.codes[i], 0);
    }
  }
}

// Relative RMS error of the round trip on N(0, 0.02^2) weights with outliers:
// each extra bit roughly halves it; the bounds are 1.3-1.5x what ggml reaches
// (0.31, 0.17, 0.083, 0.043, 0.024).
TEST(GgmlKquants, ErrorShrinksWithBits) {
  const MatrixRM W = test::random_weights(64, 4 * kSuper, 14);
  const double bounds[] = {0.45, 0.24, 0.12, 0.06, 0.03};
  double previous = 1.0;
  for (int t = 0; t < 5; ++t) {
    const GgmlGrid grid = kKQuants[t];
    const double rel = (dequantize(ggml_quantize(grid, W)) - W).norm() / W.norm();
    EXPECT_LT(rel, bounds[t]) << name_of(grid);
    EXPECT_LT(rel, previous) << name_of(grid);
    previous = rel;
  }
}

// The importance path weighs columns: with importance concentrated on a few
// columns, their error is lower than without importance.
TEST(GgmlKquants, ImportanceLowersTheWeightedError) {
  constexpr Eigen::Index kCols = Eigen::Index{2} * kSuper;
  constexpr float kLow = 1e-3f, kHigh = 1.0f;  // every 7th column matters 1000x more
  const MatrixRM W = test::random_weights(64, kCols, 15);
  std::vector<float> importance(kCols, kLow);
  for (Eigen::Index c = 0; c < kCols; c += 7) importance[c] = kHigh;
  const Eigen::Map<const Eigen::RowVectorXf> w(importance.data(), kCols);
  for (GgmlGrid grid : kKQuants) {
    const MatrixRM plain = dequantize(ggml_quantize(grid, W)) - W;
    const MatrixRM weighted = dequantize(ggml_quantize(grid, W, importance)) - W;
    const auto weighted_error = [&](const MatrixRM& E) {
      return (E.array().square().rowwise() * w.array()).sum();
    };
    EXPECT_LT(weighted_error(weighted), weighted_error(plain)) << name_of(grid);
  }
}

TEST(GgmlKquants, SameResultForAnyThreadCount) {
  const MatrixRM W = test_weights(40, 2 * kSuper, 16);
  const std::vector<float> importance = random_importance(2 * kSuper, 17);
  for (GgmlGrid grid : kKQuants) {
    SCOPED_TRACE(name_of(grid));
    const GgmlBlocks many = ggml_quantize(grid, W, importance);
    const tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    const GgmlBlocks single = ggml_quantize(grid, W, importance);
    EXPECT_EQ(many.d, single.d);
    EXPECT_EQ(many.dmin, single.dmin);
    EXPECT_EQ(many.sub_scales, single.sub_scales);
    EXPECT_EQ(many.sub_mins, single.sub_mins);
    EXPECT_EQ(many.codes, single.codes);
  }
}

}  // namespace
}  // namespace ptq
