// Grids checked against values worked out by hand from PROTOCOL.md's formulas,
// with scales chosen to be exact in binary so every expected value is exact.
#include <gtest/gtest.h>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

TEST(QuantGrid, AsymmetricRangeAndRoundHalfToEven) {
  // [-2, 1.75] over 15 steps: scale 0.25, zero round(2 / 0.25) = 8.
  const auto g = grid_from_range(-2.0f, 1.75f, 15, Symmetry::Asymmetric);
  EXPECT_EQ(g.scale, 0.25f);
  EXPECT_EQ(g.zero, 8.0f);
  EXPECT_EQ(quantize_code(0.125f, g, 15), 8.0f);    // 0.5 rounds to 0 (even)
  EXPECT_EQ(quantize_code(0.375f, g, 15), 10.0f);   // 1.5 rounds to 2 (even)
  EXPECT_EQ(quantize_code(-0.125f, g, 15), 8.0f);   // -0.5 rounds to -0
  EXPECT_EQ(quantize_code(-0.375f, g, 15), 6.0f);   // -1.5 rounds to -2
  EXPECT_EQ(quantize_code(5.0f, g, 15), 15.0f);     // clamped to maxq
  EXPECT_EQ(quantize_code(-5.0f, g, 15), 0.0f);     // clamped to 0
  EXPECT_EQ(dequantize_code(10.0f, g), 0.5f);
}

TEST(QuantGrid, RangeAlwaysContainsZero) {
  // All positive: xmin = 0, so [0, 3.75] / 15 = 0.25 and zero = 0.
  const auto g = grid_from_range(1.0f, 3.75f, 15, Symmetry::Asymmetric);
  EXPECT_EQ(g.scale, 0.25f);
  EXPECT_EQ(g.zero, 0.0f);
  // All negative: xmax = 0, [-3.75, 0] -> zero = 15.
  const auto n = grid_from_range(-3.75f, -1.0f, 15, Symmetry::Asymmetric);
  EXPECT_EQ(n.scale, 0.25f);
  EXPECT_EQ(n.zero, 15.0f);
}

TEST(QuantGrid, SymmetricCentredOnLargestMagnitude) {
  // xmax = max(|-0.5|, 1.875) = 1.875, xmin = -1.875: scale 3.75 / 15, zero (15 + 1) / 2.
  const auto g = grid_from_range(-0.5f, 1.875f, 15, Symmetry::Symmetric);
  EXPECT_EQ(g.scale, 0.25f);
  EXPECT_EQ(g.zero, 8.0f);
  // The reference only mirrors xmin when it is negative: [0, 3.75] stays one-sided.
  const auto p = grid_from_range(0.5f, 3.75f, 15, Symmetry::Symmetric);
  EXPECT_EQ(p.scale, 0.25f);
  EXPECT_EQ(p.zero, 8.0f);
}

TEST(QuantGrid, AllZeroRangeBecomesMinusOneToOne) {
  const auto g = grid_from_range(0.0, 0.0, 3, Symmetry::Symmetric);
  EXPECT_EQ(g.scale, 2.0 / 3.0);
  EXPECT_EQ(g.zero, 2.0);
  const auto a = grid_from_range(0.0f, 0.0f, 255, Symmetry::Asymmetric);
  EXPECT_EQ(a.scale, 2.0f / 255.0f);
  EXPECT_EQ(dequantize_code(quantize_code(0.0f, a, 255), a), 0.0f);
}

TEST(QuantGrid, FitGridsByGranularity) {
  MatrixRM W(2, 5);
  W << -2.0f, 1.75f, 0.0f, 0.5f, 3.75f,  //
      0.0f, 0.25f, 0.0f, -3.75f, 0.0f;
  QuantSpec spec;
  spec.granularity = Granularity::Tensor;  // [-3.75, 3.75] / 15 = 0.5, zero round(7.5) = 8
  auto t = fit_grids(W, spec);
  ASSERT_EQ(t.scales.cols(), 1);
  EXPECT_EQ(t.scales(0, 0), 0.5f);
  EXPECT_EQ(t.scales(1, 0), 0.5f);
  EXPECT_EQ(t.zeros(1, 0), 8.0f);
  spec.granularity = Granularity::Channel;  // row 0: [-2, 3.75] -> 5.75 / 15
  auto c = fit_grids(W, spec);
  EXPECT_EQ(c.scales(0, 0), 5.75f / 15.0f);
  EXPECT_EQ(c.scales(1, 0), 4.0f / 15.0f);  // row 1: [-3.75, 0.25]
  spec.granularity = Granularity::Group;
  spec.group_size = 2;  // groups {0,1} {2,3} {4}: the last one partial
  auto g = fit_grids(W, spec);
  ASSERT_EQ(g.scales.cols(), 3);
  EXPECT_EQ(g.scales(0, 0), 0.25f);          // [-2, 1.75]
  EXPECT_EQ(g.scales(0, 2), 0.25f);          // [0, 3.75]
  EXPECT_EQ(g.zeros(1, 1), 15.0f);           // [-3.75, 0]
  EXPECT_EQ(g.scales(1, 2), 2.0f / 15.0f);   // all zero -> [-1, 1]
}

TEST(QuantGrid, ValidateNamesTheField) {
  QuantSpec spec;
  spec.bits = 9;
  EXPECT_THROW(spec.validate(), InputError);
  spec.bits = 1;
  try {
    spec.validate();
    FAIL() << "bits = 1 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("QuantSpec.bits: expected 2..8, found 1"),
              std::string::npos);
  }
  spec.bits = 4;
  spec.granularity = Granularity::Group;
  spec.group_size = 0;
  EXPECT_THROW(spec.validate(), InputError);
  spec.group_size = 32;
  EXPECT_NO_THROW(spec.validate());
  EXPECT_EQ(spec.groups_per_row(65), 3);
}

}  // namespace
}  // namespace ptq
