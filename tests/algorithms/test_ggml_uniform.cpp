// The uniform grids that land on ggml's legacy blocks exactly (ggml_uniform_spec,
// to_ggml_blocks), for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: the blocks RTN and GPTQ
// leave, decoded by ggml's block formula (d * q, or d * q + m), are the weights
// ptq computed; every RTN code is the nearest point of the stored float16 grid;
// groups that are constant or all zero survive; GPTQ on each grid has less
// output error than RTN on it.
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "algorithms/ggml_round.hpp"
#include "algorithms/gptq.hpp"
#include "algorithms/quantized_weight.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

using ggml_detail::fp16_to_fp32;

constexpr std::array kGrids = {GgmlGrid::q4_0, GgmlGrid::q4_1, GgmlGrid::q5_0, GgmlGrid::q5_1,
                               GgmlGrid::q8_0};
constexpr int kRows = 16, kCols = 256, kBlock = 32;

// Trained-like weights with one constant group and one all-zero group.
MatrixRM weights(unsigned seed) {
  MatrixRM W = test::random_weights(kRows, kCols, seed);
  W.row(0).segment(0, kBlock).setConstant(0.013f);
  W.row(1).segment(kBlock, kBlock).setZero();
  return W;
}

QuantSpec spec_of(GgmlGrid grid) {
  const auto spec = ggml_uniform_spec(grid);
  EXPECT_TRUE(spec.has_value()) << ggml_grid_info(grid).name;
  return *spec;
}

// ggml's decoding of one weight of a legacy block (ggml-quants.c dequantize_row_*).
float ggml_value(const GgmlBlocks& b, std::int64_t row, std::int64_t col) {
  const std::int64_t block = (row * b.cols + col) / kBlock;
  const float d = fp16_to_fp32(b.d[block]);
  const int q = b.codes[row * b.cols + col];
  if (!b.dmin.empty()) return d * static_cast<float>(q) + fp16_to_fp32(b.dmin[block]);
  const int offset = b.grid == GgmlGrid::q8_0 ? 0 : (b.grid == GgmlGrid::q4_0 ? 8 : 16);
  return d * static_cast<float>(q - offset);
}

void expect_blocks_hold(const QuantizedMatrix& m, GgmlGrid grid) {
  const GgmlBlocks b = to_ggml_blocks(m, grid);
  const MatrixRM Q = m.dequantize();
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kCols; ++c)
      ASSERT_NEAR(ggml_value(b, r, c), Q(r, c), 1e-6f * (1.0f + std::abs(Q(r, c))))
          << ggml_grid_info(grid).name << " row " << r << " column " << c;
}

TEST(GgmlUniform, RtnBlocksDecodeToItsWeightsAndRoundToNearest) {
  const MatrixRM W = weights(3);
  for (GgmlGrid grid : kGrids) {
    SCOPED_TRACE(ggml_grid_info(grid).name);
    const QuantizedMatrix m = rtn_quantize(W, spec_of(grid));
    expect_blocks_hold(m, grid);
    const GgmlBlocks b = to_ggml_blocks(m, grid);
    const int levels = m.spec.maxq();
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < kCols; ++c) {
        // Nearest: every other code of the block's grid is at least as far.
        const float got = std::abs(W(r, c) - ggml_value(b, r, c));
        const std::int64_t block = (static_cast<std::int64_t>(r) * kCols + c) / kBlock;
        const float d = fp16_to_fp32(b.d[block]);
        const float lo = b.dmin.empty() ? -d * static_cast<float>((levels + 1) / 2)
                                        : fp16_to_fp32(b.dmin[block]);
        for (int q = 0; q <= levels; ++q)
          ASSERT_LE(got, std::abs(W(r, c) - (lo + d * static_cast<float>(q))) * (1 + 1e-6f) + 1e-9f)
              << "row " << r << " column " << c << " code " << q;
      }
    // The constant group is kept (to float16), the all-zero group is zero.
    EXPECT_NEAR(m.dequantize()(0, 5), 0.013f, 0.013f / 1024);
    EXPECT_EQ(m.dequantize().row(1).segment(kBlock, kBlock).cwiseAbs().maxCoeff(), 0.0f);
  }
}

TEST(GgmlUniform, GptqBlocksDecodeToItsWeightsAndBeatRtn) {
  const MatrixRM W = weights(5);
  const Eigen::MatrixXd H = test::correlated_hessian(kCols, 4 * kCols, 6);
  for (GgmlGrid grid : kGrids) {
    SCOPED_TRACE(ggml_grid_info(grid).name);
    GptqConfig config;
    config.spec = spec_of(grid);
    const GptqResult r = gptq_quantize(W, H, config);
    ASSERT_EQ(r.status, GptqStatus::Ok);
    expect_blocks_hold(r.quantized, grid);
    const double gptq = output_error(W, r.quantized.dequantize(), H);
    const double rtn = output_error(W, rtn_quantize(W, config.spec).dequantize(), H);
    EXPECT_LT(gptq, 0.8 * rtn) << "gptq " << gptq << " rtn " << rtn;
  }
}

TEST(GgmlUniform, OnlyLegacyGridsHaveOne) {
  for (GgmlGrid grid : {GgmlGrid::q4_k, GgmlGrid::q6_k, GgmlGrid::iq4_nl, GgmlGrid::iq4_xs})
    EXPECT_FALSE(ggml_uniform_spec(grid).has_value()) << ggml_grid_info(grid).name;
  QuantSpec wrong = *ggml_uniform_spec(GgmlGrid::q4_1);
  wrong.symmetry = Symmetry::Symmetric;
  EXPECT_THROW(wrong.validate(), InputError);
  wrong = *ggml_uniform_spec(GgmlGrid::q5_1);
  wrong.bits = 8;
  EXPECT_THROW(wrong.validate(), InputError);
}

// exact_ggml_blocks: a symmetric grid of the type's bits with zero 2^(bits-1),
// float16 scales and groups spanning whole blocks (g128, per channel) is that
// type's blocks, each block carrying its group's scale, decoded by ggml's
// formula to exactly the grid's weights; float32 scales, asymmetric grids,
// other bits and act-order groups are not.
TEST(GgmlUniform, ExactBlocksOfWiderSymmetricGroups) {
  for (GgmlGrid grid : {GgmlGrid::q4_0, GgmlGrid::q8_0}) {
    for (Granularity g : {Granularity::Group, Granularity::Channel}) {
      QuantSpec s;
      s.bits = grid == GgmlGrid::q4_0 ? 4 : 8;
      s.symmetry = Symmetry::Symmetric;
      s.granularity = g;
      s.group_size = 128;
      s.scale_storage = ScaleStorage::f16;
      const QuantizedMatrix m = rtn_quantize(weights(7), s);
      const auto b = exact_ggml_blocks(m, grid);
      ASSERT_TRUE(b.has_value()) << ggml_grid_info(grid).name;
      const MatrixRM Q = m.dequantize();
      for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < kCols; ++c) ASSERT_EQ(ggml_value(*b, r, c), Q(r, c)) << r << " " << c;
      EXPECT_FALSE(exact_ggml_blocks(m, grid == GgmlGrid::q4_0 ? GgmlGrid::q8_0 : GgmlGrid::q4_0));
      QuantizedMatrix bad = m;
      bad.scales(0, 0) = 0.1f;  // no float16 value
      EXPECT_FALSE(exact_ggml_blocks(bad, grid));
      bad = m;
      std::swap(bad.g_idx[0], bad.g_idx[kCols - 1]);
      if (g == Granularity::Group) {
        EXPECT_FALSE(exact_ggml_blocks(bad, grid));
      }
    }
  }
  QuantSpec asym;
  asym.bits = 4;
  asym.symmetry = Symmetry::Asymmetric;
  asym.group_size = 32;
  asym.scale_storage = ScaleStorage::f16;
  EXPECT_FALSE(exact_ggml_blocks(rtn_quantize(weights(8), asym), GgmlGrid::q4_0));
}

}  // namespace
}  // namespace ptq
