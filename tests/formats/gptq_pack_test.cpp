// GPTQ's packed Linear tensors (pipeline/formats/gptq_pack.hpp): words laid out
// as AutoGPTQ's pack() documents them (hand-made 4-bit and 3-bit columns,
// including a 3-bit value straddling two words); pack -> unpack gives back the
// codes, scales, zeros and g_idx exactly for 2, 3, 4 and 8 bits, symmetric and
// asymmetric, per group and per channel, with act-order groups; v1 refuses a
// zero point of 0 that v2 stores; quantization_config written and read back;
// bad tensors and configs are InputErrors naming the tensor or key.
#include "pipeline/formats/gptq_pack.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "packed_test_util.hpp"

namespace ptq {
namespace {

using test::expect_input_error;
constexpr int kOut = test::kPackedOut, kIn = test::kPackedIn;

MatrixRM weights(unsigned seed) {
  MatrixRM W = test::packed_test_weights(seed);
  W.row(3).setConstant(0.01f);  // all positive: an asymmetric zero point of 0
  return W;
}

QuantSpec spec(int bits, Symmetry symmetry, Granularity granularity) {
  return test::packed_test_spec(bits, symmetry, granularity);
}

TEST(GptqPack, FourBitWordsHoldEightInputsLowNibbleFirst) {
  QuantizedMatrix m = rtn_quantize(weights(1), spec(4, Symmetry::Symmetric, Granularity::Channel));
  for (int o = 0; o < kOut; ++o)
    for (int i = 0; i < kIn; ++i) m.codes(o, i) = static_cast<std::uint8_t>((3 * i + o) % 16);
  const GptqLinear t = pack_gptq(m, GptqZeros::v1, "test");
  ASSERT_EQ(t.qweight.size(), static_cast<std::size_t>(kIn / 8 * kOut));
  for (int w = 0; w < kIn / 8; ++w)
    for (int o = 0; o < kOut; ++o) {
      std::uint32_t want = 0;
      for (int k = 0; k < 8; ++k)
        want |= static_cast<std::uint32_t>((3 * (8 * w + k) + o) % 16) << (4 * k);
      ASSERT_EQ(static_cast<std::uint32_t>(t.qweight[w * kOut + o]), want) << w << " " << o;
    }
  // Symmetric 4-bit: zero 8 stored as 7 in every nibble (v1).
  for (std::int32_t z : t.qzeros) EXPECT_EQ(static_cast<std::uint32_t>(z), 0x77777777u);
}

TEST(GptqPack, ThreeBitValuesStraddleWordsAsAutoGptqPacksThem) {
  QuantizedMatrix m = rtn_quantize(weights(2), spec(3, Symmetry::Symmetric, Granularity::Channel));
  m.codes.setZero();
  m.codes(0, 10) = 0b101;  // bits 30..32 of column 0's stream: two in word 0, one in word 1
  m.codes(0, 21) = 0b110;  // bits 63..65: one in word 1, two in word 2
  m.codes(0, 11) = 0b111;  // bits 33..35
  const GptqLinear t = pack_gptq(m, GptqZeros::v1, "test");
  EXPECT_EQ(static_cast<std::uint32_t>(t.qweight[0 * kOut]), 0b01u << 30);
  EXPECT_EQ(static_cast<std::uint32_t>(t.qweight[1 * kOut]), 0b1u | (0b111u << 1) | (0b0u << 31));
  EXPECT_EQ(static_cast<std::uint32_t>(t.qweight[2 * kOut]), 0b11u);
  EXPECT_EQ(t.qweight.size(), static_cast<std::size_t>(kIn * 3 / 32 * kOut));
}

TEST(GptqPack, RoundTripsEveryBitWidthAndGrid) {
  const MatrixRM W = weights(3);
  for (int bits : {2, 3, 4, 8})
    for (Symmetry sym : {Symmetry::Symmetric, Symmetry::Asymmetric})
      for (Granularity g : {Granularity::Group, Granularity::Channel})
        for (bool act_order : {false, true}) {
          SCOPED_TRACE(std::to_string(bits) + " bits, sym " +
                       std::to_string(sym == Symmetry::Symmetric) + ", group " +
                       std::to_string(g == Granularity::Group) + ", act-order " +
                       std::to_string(act_order));
          const QuantSpec s = spec(bits, sym, g);
          QuantizedMatrix m = rtn_quantize(W, s);
          if (act_order && g == Granularity::Group)  // each input in another column's group
            for (int c = 0; c < kIn; ++c) m.g_idx[c] = ((c * 37) % kIn) / s.group_size;
          const GptqZeros zeros = gptq_zeros_needed(m);
          EXPECT_EQ(zeros, sym == Symmetry::Asymmetric ? GptqZeros::v2 : GptqZeros::v1);
          test::expect_same_grid(unpack_gptq(pack_gptq(m, zeros, "test"), zeros, s, "test"), m);
        }
}

TEST(GptqPack, V1RefusesAZeroPointOfZero) {
  const QuantizedMatrix m =
      rtn_quantize(weights(4), spec(4, Symmetry::Asymmetric, Granularity::Group));
  ASSERT_EQ(m.zeros.minCoeff(), 0.0f);
  try {
    pack_gptq(m, GptqZeros::v1, "model.layers.0.mlp.up_proj.weight");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("up_proj"), std::string::npos) << e.what();
  }
}

TEST(GptqPack, BadGridsAndTensorsAreInputErrors) {
  const QuantSpec s = spec(4, Symmetry::Symmetric, Granularity::Group);
  const QuantizedMatrix m = rtn_quantize(weights(5), s);
  QuantizedMatrix bad = m;
  bad.spec.bits = 5;
  expect_input_error([&] { pack_gptq(bad, GptqZeros::v1, "five"); }, "2, 3, 4 or 8");
  bad = m;
  bad.scales(0, 0) = 0.1f;  // not a float16 value
  expect_input_error([&] { pack_gptq(bad, GptqZeros::v1, "f32 scale"); }, "float16 scales");
  expect_input_error(
      [&] { pack_gptq(rtn_quantize(weights(5).leftCols(48), s), GptqZeros::v1, "narrow"); },
      "multiples of 32");
  const GptqLinear t = pack_gptq(m, GptqZeros::v1, "ok");
  GptqLinear cut = t;
  cut.qweight.pop_back();
  expect_input_error([&] { unpack_gptq(cut, GptqZeros::v1, s, "layer.qweight"); }, "qweight");
  cut = t;
  cut.qzeros.push_back(0);
  expect_input_error([&] { unpack_gptq(cut, GptqZeros::v1, s, "layer"); }, "qzeros");
  cut = t;
  cut.scales.resize(3);
  expect_input_error([&] { unpack_gptq(cut, GptqZeros::v1, s, "layer"); }, "scales");
  cut = t;
  cut.g_idx[7] = 99;
  expect_input_error([&] { unpack_gptq(cut, GptqZeros::v1, s, "layer"); }, "g_idx");
  cut = t;
  cut.g_idx.pop_back();
  expect_input_error([&] { unpack_gptq(cut, GptqZeros::v1, s, "layer"); }, "g_idx");
  expect_input_error(
      [&] { unpack_gptq(t, GptqZeros::v1, spec(8, Symmetry::Symmetric, Granularity::Group), "l"); },
      "bits");
  expect_input_error(
      [&] {
        unpack_gptq(t, GptqZeros::v1, spec(4, Symmetry::Symmetric, Granularity::Channel), "l");
      },
      "groups");
}

TEST(GptqPack, QuantizationConfigReadsBackAndRefusesWhatItCannotRead) {
  const GptqCheckpointGrid grid{spec(3, Symmetry::Asymmetric, Granularity::Group), GptqZeros::v2,
                                true};
  const nlohmann::json config = {
      {"quantization_config", gptq_quantization_config(grid, false, 0.01)}};
  const auto back = read_gptq_quantization_config(config, "config.json");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->spec, grid.spec);
  EXPECT_EQ(back->zeros, GptqZeros::v2);
  EXPECT_TRUE(back->desc_act);
  EXPECT_EQ(config["quantization_config"]["checkpoint_format"], "gptq_v2");
  EXPECT_FALSE(
      read_gptq_quantization_config(nlohmann::json{{"model_type", "llama"}}, "c").has_value());
  const auto refused = [&](const char* key, const nlohmann::json& value,
                           const std::string& needle) {
    nlohmann::json c = config;
    c["quantization_config"][key] = value;
    expect_input_error([&] { read_gptq_quantization_config(c, "config.json"); }, needle);
  };
  refused("bits", 5, "quantization_config.bits");
  refused("bits", "four", "quantization_config.bits");
  refused("group_size", 0, "group_size");
  refused("checkpoint_format", "marlin", "checkpoint_format");
}

}  // namespace
}  // namespace ptq
