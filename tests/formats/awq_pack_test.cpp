// AutoAWQ's GEMM layout (pipeline/formats/awq_pack.hpp): nibble k of each word
// holds output column 8 j + (0, 2, 4, 6, 1, 3, 5, 7)[k], for qweight and qzeros
// alike (a hand-made matrix checked word by word); pack -> unpack gives back
// codes, scales and zeros; the config reads back; grids the layout cannot
// hold and damaged tensors or configs are InputErrors naming what is wrong.
#include "pipeline/formats/awq_pack.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "packed_test_util.hpp"

namespace ptq {
namespace {

using test::expect_input_error;
constexpr int kOut = test::kPackedOut, kIn = test::kPackedIn;

QuantSpec awq_spec() {
  QuantSpec s = test::packed_test_spec(4, Symmetry::Asymmetric, Granularity::Group);
  s.range = RangeRule::MinMax;
  return s;
}

QuantizedMatrix quantized(unsigned seed) {
  return rtn_quantize(test::packed_test_weights(seed), awq_spec());
}

TEST(AwqPack, WordsInterleaveOutputColumnsInAwqOrder) {
  QuantizedMatrix m = quantized(1);
  for (int o = 0; o < kOut; ++o)
    for (int i = 0; i < kIn; ++i) m.codes(o, i) = static_cast<std::uint8_t>((7 * o + i) % 16);
  for (int o = 0; o < kOut; ++o)
    for (int g = 0; g < m.zeros.cols(); ++g) m.zeros(o, g) = static_cast<float>((o + 5 * g) % 16);
  const AwqLinear t = pack_awq(m, "test");
  constexpr int kOrder[] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (int i = 0; i < kIn; ++i)
    for (int j = 0; j < kOut / 8; ++j) {
      std::uint32_t want = 0;
      for (int k = 0; k < 8; ++k)
        want |= static_cast<std::uint32_t>((7 * (8 * j + kOrder[k]) + i) % 16) << (4 * k);
      ASSERT_EQ(static_cast<std::uint32_t>(t.qweight[i * (kOut / 8) + j]), want) << i << " " << j;
    }
  for (int g = 0; g < kIn / 32; ++g)
    for (int j = 0; j < kOut / 8; ++j) {
      std::uint32_t want = 0;
      for (int k = 0; k < 8; ++k)
        want |= static_cast<std::uint32_t>((8 * j + kOrder[k] + 5 * g) % 16) << (4 * k);
      ASSERT_EQ(static_cast<std::uint32_t>(t.qzeros[g * (kOut / 8) + j]), want) << g << " " << j;
    }
}

TEST(AwqPack, RoundTripsTheGrid) {
  const QuantizedMatrix m = quantized(2);
  const QuantizedMatrix back = unpack_awq(pack_awq(m, "test"), awq_spec(), "test");
  test::expect_same_grid(back, m);
}

TEST(AwqPack, BadGridsTensorsAndConfigsAreInputErrors) {
  const QuantizedMatrix m = quantized(3);
  QuantizedMatrix bad = m;
  bad.spec.symmetry = Symmetry::Symmetric;
  expect_input_error([&] { pack_awq(bad, "sym"); }, "4-bit asymmetric");
  bad = m;
  bad.g_idx[40] = 0;
  expect_input_error([&] { pack_awq(bad, "act-order"); }, "g_idx");
  bad = m;
  bad.scales(2, 1) = 0.1f;
  expect_input_error([&] { pack_awq(bad, "f32 scale"); }, "float16 scales");
  const AwqLinear t = pack_awq(m, "ok");
  AwqLinear cut = t;
  cut.qweight.pop_back();
  expect_input_error([&] { unpack_awq(cut, awq_spec(), "layer"); }, "qweight");
  cut = t;
  cut.qzeros.resize(3);
  expect_input_error([&] { unpack_awq(cut, awq_spec(), "layer"); }, "qzeros");
  cut = t;
  cut.scales.pop_back();
  expect_input_error([&] { unpack_awq(cut, awq_spec(), "layer"); }, "scales");
  const nlohmann::json config = {{"quantization_config", awq_quantization_config(awq_spec())}};
  const auto back = read_awq_quantization_config(config, "config.json");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->group_size, 32);
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"version", "gemv"}, {"bits", 8}, {"zero_point", false}, {"group_size", 0}}) {
    nlohmann::json c = config;
    c["quantization_config"][key] = value;
    expect_input_error([&] { read_awq_quantization_config(c, "config.json"); },
                       "quantization_config");
  }
}

}  // namespace
}  // namespace ptq
