#include "io/dtype.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <string>

#include "io/error.hpp"

namespace ptq {

// Checkpoint bytes are little-endian; we reinterpret them in place.
static_assert(std::endian::native == std::endian::little, "ptq assumes a little-endian host");

namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;  // safetensors spelling
  std::size_t size;
};

// One table feeds dtype_size, dtype_name and parse_dtype.
constexpr std::array<DTypeInfo, 10> kDTypes{{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
}};

const DTypeInfo& info(DType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d;
  }
  PTQ_ASSERT(false && "DType missing from kDTypes");
  return kDTypes[0];
}

// IEEE binary32 / binary16 field layouts.
constexpr std::uint32_t kF32SignMask = 0x80000000u;
constexpr std::uint32_t kF32AbsMask = 0x7fffffffu;
constexpr std::uint32_t kF32InfBits = 0x7f800000u;
constexpr int kF32MantBits = 23;
constexpr int kF16MantBits = 10;
constexpr int kMantShift = kF32MantBits - kF16MantBits;  // 13
constexpr int kExpBiasDelta = 127 - 15;                  // float bias - half bias
constexpr std::uint16_t kF16InfBits = 0x7c00u;
constexpr std::uint16_t kF16QuietBit = 0x0200u;
// |f| >= 65520 (halfway between 65504, the largest half, and 65536) rounds to inf.
constexpr std::uint32_t kF16OverflowBits = 0x477ff000u;
// |f| < 2^-14 is subnormal in half; |f| <= 2^-25 (half the smallest subnormal,
// a tie that goes to the even zero) rounds to zero.
constexpr std::uint32_t kF16MinNormalBits = 0x38800000u;
constexpr std::uint32_t kF16HalfMinSubnormalBits = 0x33000000u;

// Shifts `value` right by `shift` (>= 1) bits, rounding to nearest, ties to even.
std::uint32_t shift_round_even(std::uint32_t value, int shift) {
  const std::uint32_t kept = value >> shift;
  const std::uint32_t rest = value & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
}

}  // namespace

std::size_t dtype_size(DType t) { return info(t).size; }

std::string_view dtype_name(DType t) { return info(t).name; }

std::optional<DType> parse_dtype(std::string_view s) {
  for (const auto& d : kDTypes) {
    if (d.name == s) return d.type;
  }
  return std::nullopt;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> kF16MantBits) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits = 0;
  if (exp == 0x1fu) {
    bits = sign | kF32InfBits | (mant << kMantShift);  // inf or nan, payload kept
  } else if (exp != 0) {
    bits = sign | ((exp + kExpBiasDelta) << kF32MantBits) | (mant << kMantShift);
  } else {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    const float magnitude = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(bits);
}

std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((bits & kF32SignMask) >> 16);
  const std::uint32_t abs = bits & kF32AbsMask;
  if (abs > kF32InfBits) {
    // NaN: keep the top payload bits, force quiet so it cannot become inf.
    return static_cast<std::uint16_t>(sign | kF16InfBits | kF16QuietBit |
                                      ((abs >> kMantShift) & 0x3ffu));
  }
  if (abs >= kF16OverflowBits) return static_cast<std::uint16_t>(sign | kF16InfBits);
  if (abs >= kF16MinNormalBits) {
    // Rebias the exponent; a mantissa carry correctly bumps the exponent.
    const std::uint32_t rebased = abs - (static_cast<std::uint32_t>(kExpBiasDelta) << kF32MantBits);
    return static_cast<std::uint16_t>(sign | shift_round_even(rebased, kMantShift));
  }
  if (abs <= kF16HalfMinSubnormalBits) return sign;
  // Subnormal half: value / 2^-24 = mant24 * 2^(exp - 126), exp in [102, 112].
  const std::uint32_t exp = abs >> kF32MantBits;
  const std::uint32_t mant24 = (abs & 0x7fffffu) | 0x800000u;
  const int shift = 126 - static_cast<int>(exp);
  return static_cast<std::uint16_t>(sign | shift_round_even(mant24, shift));
}

float bf16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

std::uint16_t float_to_bf16(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  if ((bits & kF32AbsMask) > kF32InfBits) {
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  }
  // Overflow past the largest bf16 carries into the exponent and gives inf.
  return static_cast<std::uint16_t>(shift_round_even(bits, 16));
}

void convert_to_float(DType t, const std::byte* src, std::size_t count, float* dst,
                      std::string_view what) {
  switch (t) {
    case DType::F32:
      // memcpy's pointers must not be null, and an empty vector's data() may be.
      if (count > 0) std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::F16:
    case DType::BF16: {
      const bool half = t == DType::F16;
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t v = 0;
        std::memcpy(&v, src + 2 * i, sizeof v);  // src may be unaligned
        dst[i] = half ? half_to_float(v) : bf16_to_float(v);
      }
      return;
    }
    default:
      throw input_error(std::string(what), "dtype F32, F16 or BF16", std::string(dtype_name(t)));
  }
}

namespace {

template <class Bits>
std::optional<std::size_t> first_all_ones(std::span<const std::byte> bytes, Bits exponent) {
  const std::size_t n = bytes.size() / sizeof(Bits);
  for (std::size_t i = 0; i < n; ++i) {
    Bits v;
    std::memcpy(&v, bytes.data() + i * sizeof(Bits), sizeof(Bits));
    if ((v & exponent) == exponent) return i;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::size_t> first_non_finite(DType t, std::span<const std::byte> bytes) {
  switch (t) {
    case DType::F64:
      return first_all_ones<std::uint64_t>(bytes, 0x7FF0000000000000ULL);
    case DType::F32:
      return first_all_ones<std::uint32_t>(bytes, 0x7F800000U);
    case DType::F16:
      return first_all_ones<std::uint16_t>(bytes, 0x7C00U);
    case DType::BF16:
      return first_all_ones<std::uint16_t>(bytes, 0x7F80U);
    default:
      return std::nullopt;
  }
}

}  // namespace ptq
