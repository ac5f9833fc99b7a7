// ggml's legacy grids (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and IQ4_NL/IQ4_XS: input
// errors, hand-made blocks dequantized by the public formulas, codes within
// their documented ranges, ggml's rounding helpers, and thread-count
// independence. Bit-exactness against llama-quantize is in
// tests/formats/gguf_legacy_test.cpp.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "algorithms/ggml_grid.hpp"
#include "algorithms/ggml_round.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

using ggml_detail::fp16_to_fp32;
using ggml_detail::fp32_to_fp16;
using ggml_detail::nearest_int;

constexpr std::array kGrids = {GgmlGrid::q8_0, GgmlGrid::q4_0,   GgmlGrid::q4_1,  GgmlGrid::q5_0,
                               GgmlGrid::q5_1, GgmlGrid::iq4_nl, GgmlGrid::iq4_xs};

// Scales weights of about 1 below fp16's smallest subnormal (6e-8) but above
// ggml's all-zero threshold GROUP_MAX_EPS (1e-15).
constexpr float kUnderflow = 1e-9f;

// f16 bits of the scales used in the hand-made blocks.
constexpr std::uint16_t kHalfF16 = 0x3800;      // 0.5
constexpr std::uint16_t kMinusOneF16 = 0xbc00;  // -1.0

// Squared reconstruction error relative to the row's squared norm that each
// grid stays under on test::random_weights (Gaussian with 0.5 % outliers):
// about twice the worst measured (Q8_0 7e-5, Q5_0 5e-3, Q4_0 1.9e-2); a wrong
// scale or code order gives errors of order 1.
double relative_error_bound(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q8_0:
      return 2e-4;
    case GgmlGrid::q5_0:
    case GgmlGrid::q5_1:
      return 1e-2;
    default:
      return 4e-2;
  }
}

std::vector<float> importance_for(std::int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 2.0f);
  std::vector<float> imp(cols);
  for (auto& v : imp) v = u(rng);
  imp[3] = 0.0f;  // llama.cpp imatrices can hold zeros (columns never active)
  return imp;
}

// The documented code ranges of ggml_grid.hpp, inclusive.
std::pair<int, int> code_range(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q8_0:
      return {-128, 127};
    case GgmlGrid::q5_0:
    case GgmlGrid::q5_1:
      return {0, 31};
    default:
      return {0, 15};
  }
}

TEST(GgmlLegacy, RejectsBadInput) {
  const MatrixRM W = test::random_weights(2, 64, 1);
  for (const GgmlGrid grid : kGrids) {
    const int block = ggml_grid_info(grid).block_size;
    const MatrixRM ragged = test::random_weights(2, block + 16, 1);
    EXPECT_THROW(ggml_quantize(grid, ragged), InputError) << ggml_grid_info(grid).name;
    const MatrixRM fits = test::random_weights(2, block, 1);
    const std::vector<float> short_importance(block - 1, 1.0f);
    EXPECT_THROW(ggml_quantize(grid, fits, short_importance), InputError);
    MatrixRM bad = fits;
    bad(1, 5) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(ggml_quantize(grid, bad), InputError);
    bad(1, 5) = std::numeric_limits<float>::infinity();
    EXPECT_THROW(ggml_quantize(grid, bad), InputError);
  }
  // IQ4_XS needs whole 256-weight super-blocks.
  EXPECT_THROW(ggml_quantize(GgmlGrid::iq4_xs, W), InputError);
}

TEST(GgmlLegacy, DequantizesHandMadeBlocks) {
  // One block of 32 with codes 0, 1, 2, ... (mod the code range), d = 0.5, m = -1.
  for (const GgmlGrid grid : {GgmlGrid::q8_0, GgmlGrid::q4_0, GgmlGrid::q4_1, GgmlGrid::q5_0,
                              GgmlGrid::q5_1, GgmlGrid::iq4_nl}) {
    GgmlBlocks q = make_ggml_blocks(grid, 1, 32);
    q.d[0] = kHalfF16;
    if (!q.dmin.empty()) q.dmin[0] = kMinusOneF16;
    const auto [lo, hi] = code_range(grid);
    for (int j = 0; j < 32; ++j) q.codes[j] = static_cast<std::int8_t>(lo + j % (hi - lo + 1));
    const MatrixRM W = dequantize(q);
    for (int j = 0; j < 32; ++j) {
      const int c = q.codes[j];
      float expected = 0.0f;
      switch (grid) {
        case GgmlGrid::q8_0:
          expected = 0.5f * static_cast<float>(c);
          break;
        case GgmlGrid::q4_0:
          expected = 0.5f * static_cast<float>(c - 8);
          break;
        case GgmlGrid::q5_0:
          expected = 0.5f * static_cast<float>(c - 16);
          break;
        case GgmlGrid::q4_1:
        case GgmlGrid::q5_1:
          expected = 0.5f * static_cast<float>(c) - 1.0f;
          break;
        default:
          expected = 0.5f * static_cast<float>(iq4nl_values()[c]);
          break;
      }
      EXPECT_EQ(W(0, j), expected) << ggml_grid_info(grid).name << " code " << c;
    }
  }
}

TEST(GgmlLegacy, DequantizesAHandMadeIq4XsSuperBlock) {
  GgmlBlocks q = make_ggml_blocks(GgmlGrid::iq4_xs, 1, 256);
  q.d[0] = kHalfF16;
  for (int s = 0; s < 8; ++s) q.sub_scales[s] = static_cast<std::int8_t>(s * 9);  // 0 ... 63
  for (int i = 0; i < 256; ++i) q.codes[i] = static_cast<std::int8_t>((i * 7) % 16);
  const MatrixRM W = dequantize(q);
  for (int i = 0; i < 256; ++i) {
    const float sub_scale = 0.5f * static_cast<float>(q.sub_scales[i / 32] - 32);
    EXPECT_EQ(W(0, i), sub_scale * static_cast<float>(iq4nl_values()[q.codes[i]])) << i;
  }
}

TEST(GgmlLegacy, Iq4nlValuesAreKvaluesIq4nl) {
  const std::array<int, 16> expected = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(iq4nl_values()[i], expected[i]);
}

TEST(GgmlLegacy, CodesStayInRangeAndReconstructWeights) {
  MatrixRM W = test::random_weights(6, 512, 7);
  W(2, 40) = 25.0f;                        // an outlier block
  W.row(4).setZero();                      // an all-zero row
  W.row(5).segment(64, 32) *= kUnderflow;  // the block's f16 scale underflows to 0
  const std::vector<float> importance = importance_for(W.cols(), 3);
  for (const GgmlGrid grid : kGrids) {
    for (const bool weighted : {false, true}) {
      SCOPED_TRACE(std::string(ggml_grid_info(grid).name) + (weighted ? " imatrix" : ""));
      const GgmlBlocks q = ggml_quantize(grid, W, weighted ? importance : std::vector<float>{});
      const auto [lo, hi] = code_range(grid);
      for (const std::int8_t c : q.codes) ASSERT_TRUE(c >= lo && c <= hi) << int{c};
      for (const std::int8_t s : q.sub_scales) ASSERT_TRUE(s >= 0 && s <= 63) << int{s};
      const MatrixRM back = dequantize(q);
      EXPECT_EQ(back.row(4).cwiseAbs().maxCoeff(), 0.0f);
      for (const int r : {0, 1, 3}) {
        const double err = (back.row(r) - W.row(r)).squaredNorm() / W.row(r).squaredNorm();
        EXPECT_LT(err, relative_error_bound(grid)) << "row " << r;
      }
    }
  }
}

TEST(GgmlLegacy, ReferenceRoundingIsGgmls) {
  // Q8_0 rounds half away from zero (roundf): with d = 1, 2.5 -> 3 and -2.5 -> -3.
  MatrixRM W = MatrixRM::Zero(1, 32);
  W(0, 0) = 127.0f;
  W(0, 1) = 2.5f;
  W(0, 2) = -2.5f;
  const GgmlBlocks q8 = ggml_quantize(GgmlGrid::q8_0, W);
  EXPECT_EQ(q8.d[0], fp32_to_fp16(1.0f));
  EXPECT_EQ(q8.codes[1], 3);
  EXPECT_EQ(q8.codes[2], -3);
  // Q4_0: the first signed extreme maps to code 0 (d = max / -8), and the
  // opposite extreme +8 * d is clamped to code 15; codes truncate x / d + 8.5,
  // so halves round up: 0.5 -> 9, -1.5 -> 7.
  W.setZero();
  W(0, 0) = -8.0f;
  W(0, 1) = 8.0f;
  W(0, 3) = 0.5f;
  W(0, 4) = -1.5f;
  const GgmlBlocks q4 = ggml_quantize(GgmlGrid::q4_0, W);
  EXPECT_EQ(fp16_to_fp32(q4.d[0]), 1.0f);
  EXPECT_EQ(q4.codes[0], 0);
  EXPECT_EQ(q4.codes[1], 15);
  EXPECT_EQ(q4.codes[2], 8);
  EXPECT_EQ(q4.codes[3], 9);
  EXPECT_EQ(q4.codes[4], 7);
}

TEST(GgmlLegacy, ResultsDoNotDependOnThreadCount) {
  const MatrixRM W = test::random_weights(64, 256, 11);
  const std::vector<float> importance = importance_for(W.cols(), 5);
  for (const GgmlGrid grid : kGrids) {
    const GgmlBlocks many = ggml_quantize(grid, W, importance);
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    const GgmlBlocks single = ggml_quantize(grid, W, importance);
    EXPECT_EQ(many.d, single.d);
    EXPECT_EQ(many.dmin, single.dmin);
    EXPECT_EQ(many.sub_scales, single.sub_scales);
    EXPECT_EQ(many.codes, single.codes);
  }
}

TEST(GgmlRound, NearestIntRoundsHalfToEven) {
  EXPECT_EQ(nearest_int(2.5f), 2);
  EXPECT_EQ(nearest_int(3.5f), 4);
  EXPECT_EQ(nearest_int(-2.5f), -2);
  EXPECT_EQ(nearest_int(-2.6f), -3);
  EXPECT_EQ(nearest_int(4194303.0f), 4194303);
}

TEST(GgmlRound, Fp16ConversionRoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);             // the tie goes to the even 2^16: inf
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);      // tie to even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie to even (up)
  EXPECT_EQ(fp32_to_fp16(0x1p-24f), 0x0001);             // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);             // tie to even zero
  EXPECT_EQ(fp32_to_fp16(0x1.8p-25f), 0x0001);
  EXPECT_EQ(fp32_to_fp16(3 * 0x1p-25f), 0x0002);  // subnormal tie to even (up)
  EXPECT_EQ(fp32_to_fp16(0x1.ffcp-15f), 0x0400);  // rounds up into the normals
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0) continue;  // NaNs
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(bits)), bits) << h;
  }
  EXPECT_EQ(fp16_to_fp32(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace ptq
