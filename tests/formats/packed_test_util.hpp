#pragma once
// Shared by the packed-format tests (gptq_pack, awq_pack, ct_pack, bnb_pack):
// trained-like random weights, a grid fitted with float16 scales as the packed
// formats store them, an in-memory tensor, the check that a grid came back whole,
// and an InputError check on the message.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"
#include "algorithms/quantized_matrix.hpp"
#include "io/error.hpp"
#include "io/safetensors.hpp"

namespace ptq::test {

constexpr int kPackedOut = 64, kPackedIn = 128;

// [64, 128] weights ~ N(0, 0.02^2).
inline MatrixRM packed_test_weights(unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  MatrixRM W(kPackedOut, kPackedIn);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = normal(rng);
  return W;
}

// Groups of 32 (when grouped), float16 scales.
inline QuantSpec packed_test_spec(int bits, Symmetry symmetry, Granularity granularity) {
  QuantSpec s;
  s.bits = bits;
  s.symmetry = symmetry;
  s.granularity = granularity;
  s.group_size = 32;
  s.scale_storage = ScaleStorage::f16;
  return s;
}

// An in-memory checkpoint tensor holding `v`.
template <class T>
OwnedTensor owned(std::string name, DType dtype, std::vector<std::int64_t> shape,
                  const std::vector<T>& v) {
  OwnedTensor t{std::move(name), dtype, std::move(shape),
                std::vector<std::byte>(v.size() * sizeof(T))};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

// A grid read back from a format: the same spec, codes, scales, zeros, g_idx and weights.
inline void expect_same_grid(const QuantizedMatrix& back, const QuantizedMatrix& m) {
  EXPECT_EQ(back.spec, m.spec);
  EXPECT_EQ(back.codes, m.codes);
  EXPECT_EQ(back.scales, m.scales);
  EXPECT_EQ(back.zeros, m.zeros);
  EXPECT_EQ(back.g_idx, m.g_idx);
  EXPECT_EQ(back.dequantize(), m.dequantize());
}

inline void expect_input_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error for " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace ptq::test
