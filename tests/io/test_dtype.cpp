// Half/bfloat16 conversions against independent references: the IEEE formula
// evaluated in double, and nearest-value search over the sorted half values.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "io/dtype.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

// binary16 by definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormal 2^-14 * m/1024.
double half_reference(std::uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double magnitude = 0;
  if (exp == 0x1f) {
    magnitude = mant == 0 ? INFINITY : NAN;
  } else if (exp == 0) {
    magnitude = std::ldexp(mant / 1024.0, -14);
  } else {
    magnitude = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  }
  return sign ? -magnitude : magnitude;
}

bool is_half_nan(std::uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

TEST(DType, NamesSizesParse) {
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32,
                  DType::I16, DType::I8, DType::U8, DType::BOOL}) {
    EXPECT_EQ(parse_dtype(dtype_name(t)), t);
  }
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  EXPECT_FALSE(parse_dtype("f16").has_value());
  EXPECT_FALSE(parse_dtype("F8_E4M3").has_value());
}

TEST(DType, HalfToFloatExhaustiveMatchesFormula) {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float f = half_to_float(h);
    const double ref = half_reference(h);
    if (is_half_nan(h)) {
      EXPECT_TRUE(std::isnan(f)) << i;
      EXPECT_TRUE(is_half_nan(float_to_half(f))) << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), ref) << i;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << i;
    ASSERT_EQ(float_to_half(f), h) << "round trip of bit pattern " << i;
  }
}

// Nearest half by search over the sorted positive finite halves (bit order is
// value order for them); ties go to the even bit pattern, beyond 65520 is inf.
std::uint16_t nearest_half_reference(float f) {
  static const std::vector<double> values = [] {
    std::vector<double> v;
    for (std::uint16_t h = 0; h <= 0x7bff; ++h) v.push_back(half_reference(h));
    return v;
  }();
  const double x = std::fabs(static_cast<double>(f));
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (x >= 65520.0) return sign | 0x7c00;
  const auto hi =
      static_cast<std::size_t>(std::lower_bound(values.begin(), values.end(), x) - values.begin());
  if (hi == 0) return sign;
  if (hi == values.size()) return sign | 0x7bff;
  const std::size_t lo = hi - 1;
  const double dlo = x - values[lo], dhi = values[hi] - x;
  const std::size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return static_cast<std::uint16_t>(sign | pick);
}

TEST(DType, FloatToHalfTiesAndNeighbours) {
  // Every midpoint between adjacent positive halves (and the largest half and
  // 65536), plus one float ulp either side, in both signs.
  std::vector<float> inputs;
  for (std::uint16_t h = 0; h <= 0x7bff; ++h) {
    const double next = h == 0x7bff ? 65536.0 : half_reference(static_cast<std::uint16_t>(h + 1));
    const auto mid = static_cast<float>((half_reference(h) + next) / 2);  // exact in float
    inputs.insert(inputs.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)});
  }
  int ties_checked = 0;
  for (float f : inputs) {
    for (float s : {f, -f}) {
      ASSERT_EQ(float_to_half(s), nearest_half_reference(s)) << "input " << s;
      ++ties_checked;
    }
  }
  EXPECT_GT(ties_checked, 180000);
  // Hand-chosen: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1.0);
  // 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9 -> even (1+2^-9).
  EXPECT_EQ(float_to_half(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(float_to_half(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(float_to_half(0x1p-25f), 0x0000);      // half the smallest subnormal -> 0
  EXPECT_EQ(float_to_half(3 * 0x1p-25f), 0x0002);  // 1.5 subnormal ulps -> 2 (even)
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);      // tie above the max rounds to inf
  EXPECT_EQ(float_to_half(-INFINITY), 0xfc00);
}

TEST(DType, FloatToHalfRandomMatchesSearch) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    auto f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), nearest_half_reference(f)) << "input " << f;
  }
}

// bfloat16 is the top 16 bits of a float. Its value by formula, in double; the
// pattern after the largest finite one evaluates to 2^128, so rounding there
// means overflow to inf.
double bf16_formula(std::uint16_t b) {
  const int exp = (b >> 7) & 0xff, mant = b & 0x7f;
  const double magnitude =
      exp == 0 ? std::ldexp(mant / 128.0, -126) : std::ldexp(1.0 + mant / 128.0, exp - 127);
  return (b & 0x8000) ? -magnitude : magnitude;
}

std::uint16_t nearest_bf16_reference(float f) {
  const auto down =
      static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(f) >> 16);  // toward zero
  const auto up = static_cast<std::uint16_t>(down + 1);                   // away from zero
  const double dlo = std::fabs(f - bf16_formula(down)), dhi = std::fabs(bf16_formula(up) - f);
  if (dlo != dhi) return dlo < dhi ? down : up;
  return (down & 1) ? up : down;
}

TEST(DType, Bf16RoundingMatchesReference) {
  std::mt19937 rng(99);
  for (int i = 0; i < 200000; ++i) {
    auto bits = static_cast<std::uint32_t>(rng());
    if (i % 4 == 0) bits = (bits & 0xffff0000u) | 0x8000u;  // exact ties
    const auto f = std::bit_cast<float>(bits);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(float_to_bf16(f), nearest_bf16_reference(f)) << "bits " << bits;
  }
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);  // max float -> inf
}

TEST(DType, ConvertToFloatUnaligned) {
  const std::vector<float> values{1.5f, -2.25f, 65504.0f, 0x1p-24f};
  std::vector<std::byte> buffer(1 + values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t h = float_to_half(values[i]);
    std::memcpy(buffer.data() + 1 + 2 * i, &h, 2);  // deliberately odd address
  }
  std::vector<float> out(values.size());
  convert_to_float(DType::F16, buffer.data() + 1, values.size(), out.data(), "t");
  EXPECT_EQ(out, values);
  EXPECT_THROW(convert_to_float(DType::I32, buffer.data(), 1, out.data(), "t"), InputError);
}

}  // namespace
}  // namespace ptq
