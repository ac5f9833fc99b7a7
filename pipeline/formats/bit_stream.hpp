#pragma once
// Little-endian streams of `bits`-bit values in 32-bit words, the packing of
// GPTQ's qweight/qzeros and compressed-tensors' pack-quantized tensors: value
// k occupies bits [k * bits, (k + 1) * bits) of the words words[0],
// words[stride], words[2 * stride], ... (a value may straddle two words).
#include <cstddef>
#include <cstdint>

namespace ptq::bit_stream {

constexpr int kWordBits = 32;

// ORs v (< 2^bits) into its place; the words start zeroed.
inline void put(std::int32_t* words, std::ptrdiff_t stride, std::int64_t k, int bits,
                std::uint32_t v) {
  const std::int64_t at = k * bits;
  const auto word = static_cast<std::ptrdiff_t>(at / kWordBits);
  const int offset = static_cast<int>(at % kWordBits);
  auto* w = reinterpret_cast<std::uint32_t*>(words);
  w[word * stride] |= v << offset;
  if (offset + bits > kWordBits) w[(word + 1) * stride] |= v >> (kWordBits - offset);
}

inline std::uint32_t get(const std::int32_t* words, std::ptrdiff_t stride, std::int64_t k,
                         int bits) {
  const std::int64_t at = k * bits;
  const auto word = static_cast<std::ptrdiff_t>(at / kWordBits);
  const int offset = static_cast<int>(at % kWordBits);
  const auto* w = reinterpret_cast<const std::uint32_t*>(words);
  std::uint32_t v = w[word * stride] >> offset;
  if (offset + bits > kWordBits) v |= w[(word + 1) * stride] << (kWordBits - offset);
  return v & ((1u << bits) - 1u);
}

// Words holding n values: ceil(n * bits / 32).
constexpr std::int64_t words_for(std::int64_t n, int bits) {
  return (n * bits + kWordBits - 1) / kWordBits;
}

}  // namespace ptq::bit_stream
