// NF4 against a direct nearest-code implementation (a linear scan of the table),
// the known shape of the NF4 and dynamic tables, and the double-quantization
// error bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "algorithms/nf4.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

// argmin_i |x - table[i]|, first index on ties: the definition, by brute force.
int scan_nearest(float x, std::span<const float> table) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(table.size()); ++i)
    if (std::fabs(x - table[i]) < std::fabs(x - table[best])) best = i;
  return best;
}

TEST(Nf4, TablesHaveTheirKnownShape) {
  const auto& nf4 = nf4_values();
  EXPECT_TRUE(std::is_sorted(nf4.begin(), nf4.end()));
  EXPECT_EQ(nf4.front(), -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);  // an exact zero: 7 negative and 8 positive levels
  EXPECT_EQ(nf4.back(), 1.0f);
  const auto& map = dynamic_map();
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
  EXPECT_EQ(map.back(), 1.0f);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0.0f), 1);
  // Signed: every magnitude below 1 appears with both signs; the smallest is 1e-6 * 0.55.
  for (float v : map) {
    if (v == 1.0f) continue;
    EXPECT_TRUE(std::find(map.begin(), map.end(), -v) != map.end()) << v;
  }
  EXPECT_NEAR(*std::upper_bound(map.begin(), map.end(), 0.0f), 0.55e-6f, 1e-12f);
  EXPECT_NEAR(map.front(), -(0.1f + 0.9f * 63 / 64 + 1.0f) / 2.0f, 1e-6f);
}

TEST(Nf4, NearestIndexMatchesALinearScan) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.2f, 1.2f);
  for (int i = 0; i < 20000; ++i) {
    const float x = u(rng);
    ASSERT_EQ(nearest_index(x, nf4_values()), scan_nearest(x, nf4_values())) << x;
    ASSERT_EQ(nearest_index(x, dynamic_map()), scan_nearest(x, dynamic_map())) << x;
  }
}

TEST(Nf4, CodesAreNearestLevelsOfEachBlock) {
  const MatrixRM W = test::random_weights(7, 100, 9);  // 700 weights: 10 full blocks of 64 and one of 60
  const Nf4Matrix q = nf4_quantize(W, Nf4Config{});
  ASSERT_EQ(q.blocks(), 11);
  const float* w = W.data();
  for (int b = 0; b < q.blocks(); ++b) {
    const int begin = b * 64, end = std::min(700, begin + 64);
    float absmax = 0.0f;
    for (int i = begin; i < end; ++i) absmax = std::max(absmax, std::fabs(w[i]));
    for (int i = begin; i < end; ++i) ASSERT_EQ(q.codes[i], scan_nearest(w[i] / absmax, nf4_values())) << i;
  }
  const MatrixRM deq = q.dequantize();
  const std::vector<float> a = q.absmax();
  for (int i = 0; i < 700; ++i) EXPECT_EQ(deq.data()[i], nf4_values()[q.codes[i]] * a[i / 64]);
}

TEST(Nf4, DoubleQuantizedAbsmaxWithinHalfAStepOfTheMap) {
  const MatrixRM W = test::random_weights(64, 640, 4);  // 640 blocks: 3 second-level blocks (256, 256, 128)
  const Nf4Matrix q = nf4_quantize(W, Nf4Config{});
  ASSERT_EQ(q.absmax_scales.size(), 3u);
  const auto& map = dynamic_map();
  float widest_gap = 0.0f;
  for (std::size_t i = 1; i < map.size(); ++i) widest_gap = std::max(widest_gap, map[i] - map[i - 1]);
  const std::vector<float> a = q.absmax();
  double mean = 0.0;
  for (int b = 0; b < q.blocks(); ++b) {
    float exact = 0.0f;
    for (int i = b * 64; i < (b + 1) * 64; ++i) exact = std::max(exact, std::fabs(W.data()[i]));
    mean += exact / q.blocks();
    const float bound = 0.5f * widest_gap * q.absmax_scales[b / 256] * (1 + 1e-5f) + 1e-7f;
    EXPECT_LE(std::fabs(a[b] - exact), bound) << "block " << b;
  }
  EXPECT_NEAR(q.absmax_offset, mean, 1e-6 * mean);
}

TEST(Nf4, RejectsBadInput) {
  EXPECT_THROW(nf4_quantize(MatrixRM(0, 0), Nf4Config{}), InputError);
  EXPECT_THROW(nf4_quantize(MatrixRM::Ones(2, 2), Nf4Config{0, 256}), InputError);
  MatrixRM W = MatrixRM::Ones(2, 2);
  W(1, 1) = std::nanf("");
  EXPECT_THROW(nf4_quantize(W, Nf4Config{}), InputError);
}

// A fused module quantized whole and cut into parts (Phi-3's q, k, v): each
// part dequantizes to its rows of the whole, and the parts stack back into the
// whole exactly. 96 columns: a part of 160 rows is 240 blocks, so k starts 240
// positions into the first second-level block and shares that block's scale.
TEST(Nf4, PartsOfAModuleSliceAndStackExactly) {
  const MatrixRM W = test::random_weights(160 + 64 + 96, 96, 21);
  const Nf4Matrix whole = nf4_quantize(W, Nf4Config{});
  const MatrixRM dequantized = whole.dequantize();
  std::vector<Nf4Matrix> parts;
  int first = 0;
  for (int rows : {160, 64, 96}) {
    parts.push_back(nf4_slice_rows(whole, first, rows, "qkv"));
    EXPECT_EQ(parts.back().dequantize(), dequantized.middleRows(first, rows)) << first;
    first += rows;
  }
  EXPECT_EQ(parts[1].absmax_phase, 240);
  const Nf4Matrix stacked = nf4_stack_rows(parts, "qkv");
  EXPECT_EQ(stacked.codes, whole.codes);
  EXPECT_EQ(stacked.absmax_codes, whole.absmax_codes);
  EXPECT_EQ(stacked.absmax_scales, whole.absmax_scales);
  EXPECT_EQ(stacked.absmax_phase, 0);
  EXPECT_EQ(stacked.rows, whole.rows);
}

TEST(Nf4, PartsThatAreNotSlicesOfOneModuleAreRefused) {
  const MatrixRM W = test::random_weights(8, 96, 22);
  const Nf4Matrix whole = nf4_quantize(W, Nf4Config{});
  EXPECT_THROW(nf4_slice_rows(whole, 1, 2, "qkv"), InputError);  // 96 weights: not on a block
  EXPECT_THROW(nf4_slice_rows(whole, 6, 4, "qkv"), InputError);  // past the last row
  // Two matrices quantized on their own: another absmax offset, no shared phase.
  const Nf4Matrix a = nf4_slice_rows(whole, 0, 4, "qkv");
  const Nf4Matrix b = nf4_quantize(test::random_weights(4, 96, 23), Nf4Config{});
  EXPECT_THROW(nf4_stack_rows(std::vector<Nf4Matrix>{a, b}, "qkv"), InputError);
  // Parts out of order.
  const Nf4Matrix c = nf4_slice_rows(whole, 4, 4, "qkv");
  EXPECT_THROW(nf4_stack_rows(std::vector<Nf4Matrix>{c, a}, "qkv"), InputError);
}

}  // namespace
}  // namespace ptq
