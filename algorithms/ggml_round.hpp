#pragma once
// ggml's scalar rounding and its all-zero threshold, shared by the ggml grid
// quantizers (ggml_legacy.cpp, ggml_kquants.cpp, ggml_search.cpp, ggml_iq4.cpp):
// reproducing llama-quantize bit for bit needs these to round exactly as ggml does.
//
// No FMA: llama-quantize's ggml-quants.c (in ggml-base, built without the
// AVX2/FMA flags of ggml-cpu) rounds every a*b + c twice; contracting those into
// FMAs changes the imatrix paths' bytes. Our sources build in ISO C++ mode
// (CMAKE_CXX_EXTENSIONS OFF), where GCC does not contract, so plain float
// expressions in ggml's order match it.
#include <bit>
#include <cstdint>

namespace ptq::ggml_detail {

// GROUP_MAX_EPS (ggml-quants.c): a group (block, sub-block, or the sub-scales of
// a super-block) whose largest magnitude is below this is stored as all zero.
constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int (ggml-quants.c): adding 1.5 * 2^23 makes the FPU round x to
// an integer (half to even) held in the low mantissa bits. Like ggml, valid for
// |x| <= 2^22 - 1 only.
inline int nearest_int(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  constexpr std::int32_t kMantissaMask = 0x007fffff;
  constexpr std::int32_t kMagicMantissa = 0x00400000;  // the mantissa of kMagic itself
  return (std::bit_cast<std::int32_t>(x + kMagic) & kMantissaMask) - kMagicMantissa;
}

// GGML_FP32_TO_FP16: round to nearest, ties to even; overflow to inf; NaN to
// ggml's quiet NaN 0x7e00 with the sign kept.
inline std::uint16_t fp32_to_fp16(float f) {
  constexpr std::uint32_t kAbsMask = 0x7fffffffu, kInfBits = 0x7f800000u;
  constexpr std::uint32_t kOverflowBits = 0x477ff000u;          // 65520: ties up to 2^16, i.e. inf
  constexpr std::uint32_t kMinNormalBits = 0x38800000u;         // 2^-14, the smallest normal half
  constexpr std::uint32_t kHalfMinSubnormalBits = 0x33000000u;  // 2^-25: below rounds to 0
  constexpr std::uint32_t kRebias = (127u - 15u) << 23;         // float minus half exponent bias
  constexpr int kMantShift = 23 - 10;
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & kAbsMask;
  if (abs > kInfBits) return sign | 0x7e00u;
  if (abs >= kOverflowBits) return sign | 0x7c00u;
  // Shift right by `shift` bits, rounding to nearest even.
  const auto round_shift = [](std::uint32_t v, int shift) {
    const std::uint32_t half = 1u << (shift - 1);
    const std::uint32_t rest = v & ((half << 1) - 1u);
    const std::uint32_t kept = v >> shift;
    return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
  };
  if (abs >= kMinNormalBits) {
    // A carry out of the mantissa correctly bumps the exponent.
    return sign | static_cast<std::uint16_t>(round_shift(abs - kRebias, kMantShift));
  }
  if (abs <= kHalfMinSubnormalBits) return sign;
  // Subnormal half: the value in units of 2^-24 is the float mantissa (with its
  // implicit bit) shifted right by 126 - exponent (14 ... 24 here).
  const std::uint32_t mantissa = (abs & 0x007fffffu) | 0x00800000u;
  const int shift = 126 - static_cast<int>(abs >> 23);
  return sign | static_cast<std::uint16_t>(round_shift(mantissa, shift));
}

// GGML_FP16_TO_FP32: exact.
inline float fp16_to_fp32(std::uint16_t h) {
  constexpr float kSubnormalUnit = 0x1p-24f;
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float v = static_cast<float>(mantissa) * kSubnormalUnit;
    return sign ? -v : v;
  }
  const std::uint32_t float_exponent = exponent == 0x1fu ? 0xffu : exponent + (127u - 15u);
  return std::bit_cast<float>(sign | (float_exponent << 23) | (mantissa << 13));
}

}  // namespace ptq::ggml_detail
