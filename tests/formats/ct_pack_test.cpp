// compressed-tensors' pack-quantized Linear tensors (pipeline/formats/ct_pack.hpp):
// words laid out as compressed-tensors' pack_to_int32 documents them (its own
// worked example: signed 8-bit values 1, 2 -> unsigned 129, 130 -> the word
// 33409; 4-bit codes low nibble first along the row; asymmetric zero points
// packed along the output dimension); pack -> unpack gives back the codes,
// scales and zeros for 4 and 8 bits, symmetric and asymmetric, per group and
// per channel; the quantization_config reads back; bad grids, tensors and
// configs are InputErrors naming the tensor or key.
#include "pipeline/formats/ct_pack.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>

#include "algorithms/int8.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "packed_test_util.hpp"

namespace ptq {
namespace {

using test::owned;

using test::expect_input_error;
constexpr int kOut = test::kPackedOut, kIn = test::kPackedIn;

MatrixRM weights(unsigned seed) { return test::packed_test_weights(seed); }

QuantSpec spec(int bits, Symmetry symmetry, Granularity granularity) {
  return test::packed_test_spec(bits, symmetry, granularity);
}

TEST(CompressedPack, EightBitWordIsTheLibrarysWorkedExample) {
  QuantizedMatrix m = rtn_quantize(weights(1), spec(8, Symmetry::Symmetric, Granularity::Channel));
  m.codes.setConstant(128);  // signed 0
  m.codes(0, 0) = 129;       // signed 1
  m.codes(0, 1) = 130;       // signed 2
  const CompressedLinear t = pack_compressed(m, "test");
  EXPECT_EQ(static_cast<std::uint32_t>(t.weight_packed[0]), 0x80808281u);  // 129, 130, 128, 128
  EXPECT_EQ(static_cast<std::uint32_t>(t.weight_packed[0]) & 0xffffu, 33409u);
  EXPECT_TRUE(t.weight_zero_point.empty());  // symmetric: no zero points stored
}

TEST(CompressedPack, FourBitRowsLowNibbleFirstAndZerosAlongTheOutputs) {
  QuantizedMatrix m = rtn_quantize(weights(2), spec(4, Symmetry::Asymmetric, Granularity::Group));
  for (int o = 0; o < kOut; ++o)
    for (int i = 0; i < kIn; ++i) m.codes(o, i) = static_cast<std::uint8_t>((5 * i + o) % 16);
  for (int o = 0; o < kOut; ++o)
    for (int g = 0; g < m.zeros.cols(); ++g) m.zeros(o, g) = static_cast<float>((o + 3 * g) % 16);
  const CompressedLinear t = pack_compressed(m, "test");
  const int row_words = kIn / 8, groups = kIn / 32;
  for (int o = 0; o < kOut; ++o)
    for (int w = 0; w < row_words; ++w) {
      std::uint32_t want = 0;
      for (int k = 0; k < 8; ++k)
        want |= static_cast<std::uint32_t>((5 * (8 * w + k) + o) % 16) << (4 * k);
      ASSERT_EQ(static_cast<std::uint32_t>(t.weight_packed[o * row_words + w]), want)
          << o << " " << w;
    }
  ASSERT_EQ(t.weight_zero_point.size(), static_cast<std::size_t>(kOut / 8 * groups));
  for (int w = 0; w < kOut / 8; ++w)
    for (int g = 0; g < groups; ++g) {
      std::uint32_t want = 0;
      for (int k = 0; k < 8; ++k)
        want |= static_cast<std::uint32_t>((8 * w + k + 3 * g) % 16) << (4 * k);
      ASSERT_EQ(static_cast<std::uint32_t>(t.weight_zero_point[w * groups + g]), want)
          << w << " " << g;
    }
}

TEST(CompressedPack, RoundTripsEveryBitWidthAndGrid) {
  const MatrixRM W = weights(3);
  for (int bits : {4, 8})
    for (Symmetry sym : {Symmetry::Symmetric, Symmetry::Asymmetric})
      for (Granularity g : {Granularity::Group, Granularity::Channel}) {
        SCOPED_TRACE(std::to_string(bits) + " bits, sym " +
                     std::to_string(sym == Symmetry::Symmetric) + ", group " +
                     std::to_string(g == Granularity::Group));
        const QuantSpec s = spec(bits, sym, g);
        const QuantizedMatrix m = rtn_quantize(W, s);
        const QuantizedMatrix back = unpack_compressed(pack_compressed(m, "test"), s, "test");
        test::expect_same_grid(back, m);
      }
}

TEST(CompressedPack, BadGridsAndTensorsAreInputErrors) {
  const QuantSpec s = spec(4, Symmetry::Asymmetric, Granularity::Group);
  const QuantizedMatrix m = rtn_quantize(weights(4), s);
  QuantizedMatrix bad = m;
  bad.spec.bits = 3;
  expect_input_error([&] { pack_compressed(bad, "three"); }, "4 or 8 bits");
  bad = m;
  bad.g_idx[5] = 3;  // act-order grouping
  expect_input_error([&] { pack_compressed(bad, "act-order"); }, "act-order");
  bad = m;
  bad.scales(1, 1) = 0.1f;
  expect_input_error([&] { pack_compressed(bad, "f32 scale"); }, "float16 scales");
  QuantizedMatrix sym = rtn_quantize(weights(4), spec(4, Symmetry::Symmetric, Granularity::Group));
  sym.zeros(0, 0) = 7;
  expect_input_error([&] { pack_compressed(sym, "sym zero"); }, "zero points");
  const CompressedLinear t = pack_compressed(m, "ok");
  CompressedLinear cut = t;
  cut.weight_packed.pop_back();
  expect_input_error([&] { unpack_compressed(cut, s, "layer"); }, "weight_packed");
  cut = t;
  cut.weight_scale.resize(5);
  expect_input_error([&] { unpack_compressed(cut, s, "layer"); }, "weight_scale");
  cut = t;
  cut.weight_zero_point.clear();
  expect_input_error([&] { unpack_compressed(cut, s, "layer"); }, "weight_zero_point");
  expect_input_error(
      [&] { unpack_compressed(t, spec(8, Symmetry::Asymmetric, Granularity::Group), "l"); },
      "bits");
  expect_input_error(
      [&] { unpack_compressed(t, spec(4, Symmetry::Asymmetric, Granularity::Channel), "l"); },
      "groups");
}

TEST(CompressedPack, ConfigReadsBackAndRefusesWhatItCannotRead) {
  const QuantSpec s = spec(4, Symmetry::Asymmetric, Granularity::Group);
  const nlohmann::json config = {{"quantization_config", compressed_tensors_config(s, false)}};
  const auto back = read_compressed_tensors_config(config, "config.json");
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->groups.size(), 1u);
  const CompressedTensorsScheme* scheme = back->scheme_for("model.layers.0.mlp.up_proj");
  ASSERT_NE(scheme, nullptr);
  EXPECT_EQ(scheme->spec, s);
  EXPECT_FALSE(scheme->int_quantized);
  EXPECT_EQ(back->activations("c"), CtActivations::none);
  EXPECT_EQ(back->scheme_for("lm_head"), nullptr);  // ignored
  EXPECT_FALSE(
      read_compressed_tensors_config(nlohmann::json{{"model_type", "llama"}}, "c").has_value());
  // GPTQ's act-order with static groups is compressed-tensors' "weight" actorder.
  const nlohmann::json weight_order = {{"quantization_config", compressed_tensors_config(s, true)}};
  EXPECT_EQ(weight_order["quantization_config"]["config_groups"]["group_0"]["weights"]["actorder"],
            "weight");
  EXPECT_EQ(read_compressed_tensors_config(weight_order, "config.json")->groups[0].scheme.spec, s);
  const auto refused = [&](const std::function<void(nlohmann::json&)>& edit,
                           const std::string& needle) {
    nlohmann::json c = config;
    edit(c["quantization_config"]);
    expect_input_error([&] { read_compressed_tensors_config(c, "config.json"); }, needle);
  };
  refused([](nlohmann::json& q) { q["format"] = "float-quantized"; }, "format");
  refused(
      [](nlohmann::json& q) {
        q["format"] = "int-quantized";  // the group's own format wins over the top level's
        q["config_groups"]["group_0"]["format"] = "int-quantized";
      },
      "8-bit symmetric per channel");
  refused([](nlohmann::json& q) { q["config_groups"] = nlohmann::json::object(); },
          "config_groups");
  refused([](nlohmann::json& q) { q["config_groups"]["group_0"]["targets"] = "Linear"; },
          "targets");
  refused([](nlohmann::json& q) { q["config_groups"]["group_0"]["targets"] = {"re:(unclosed"}; },
          "regular expressions");
  refused([](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["num_bits"] = 3; },
          "weights");
  refused(
      [](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "tensor"; },
      "strategy");
  refused([](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["actorder"] = "group"; },
          "actorder");
  refused(
      [](nlohmann::json& q) {
        q["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}};
      },
      "weight-only");
}

// W8A8's int-quantized Linear: int8 q = code - 128 and float32 scales per
// row, back to the same grid; its config states the int8 inputs and reads back.
TEST(CompressedPack, Int8RoundTripsAndW8A8ConfigReadsBack) {
  const QuantizedMatrix m = int8_quantize_rows(weights(6));
  const Int8Linear t = pack_int8(m, "test");
  EXPECT_EQ(t.weight[3], static_cast<int>(m.codes(0, 3)) - 128);
  EXPECT_EQ(t.weight_scale[1], m.scales(1, 0));
  const QuantizedMatrix back = unpack_int8(t, "test");
  test::expect_same_grid(back, m);
  expect_input_error(
      [&] {
        pack_int8(rtn_quantize(weights(6), spec(8, Symmetry::Asymmetric, Granularity::Channel)),
                  "asym");
      },
      "8-bit symmetric");
  Int8Linear cut = t;
  cut.weight_scale.pop_back();
  expect_input_error([&] { unpack_int8(cut, "layer"); }, "weight_scale");
  for (CtActivations a : {CtActivations::token, CtActivations::tensor}) {
    const nlohmann::json config = {{"quantization_config", compressed_tensors_w8a8_config(a)}};
    const auto ct = read_compressed_tensors_config(config, "config.json");
    ASSERT_TRUE(ct.has_value());
    const CompressedTensorsScheme& scheme = ct->groups.at(0).scheme;
    EXPECT_TRUE(scheme.int_quantized);
    EXPECT_EQ(ct->activations("c"), a);
    EXPECT_EQ(scheme.spec.bits, 8);
    EXPECT_EQ(scheme.spec.granularity, Granularity::Channel);
    nlohmann::json bad = config;
    bad["quantization_config"]["config_groups"]["group_0"]["input_activations"]["dynamic"] =
        a == CtActivations::tensor;
    expect_input_error([&] { read_compressed_tensors_config(bad, "config.json"); },
                       "input_activations");
  }
}

// Several config groups (llm-compressor's mixed precision): each Linear takes
// the first group that targets it ("re:" from the start of its name, then
// "Linear"), ignored modules none; a folder mixing a W8A16 down_proj with W4A16
// elsewhere dequantizes each by its own group; groups that disagree on the
// int8 inputs are refused.
TEST(CompressedPack, SeveralConfigGroupsEachTakeTheirLinears) {
  const QuantSpec w4 = spec(4, Symmetry::Symmetric, Granularity::Group);
  const QuantSpec w8 = spec(8, Symmetry::Asymmetric, Granularity::Channel);
  nlohmann::json q = compressed_tensors_config(w4, false);
  q["format"] = "mixed-precision";
  q["config_groups"]["group_1"] = q["config_groups"]["group_0"];
  q["config_groups"]["group_0"] = compressed_tensors_config(w8, false)["config_groups"]["group_0"];
  q["config_groups"]["group_0"]["targets"] = {"re:.*mlp\\.down_proj$"};
  q["ignore"] = {"lm_head", "model.layers.1.mlp.down_proj"};
  const nlohmann::json config = {{"quantization_config", q}};
  const auto ct = read_compressed_tensors_config(config, "config.json");
  ASSERT_TRUE(ct.has_value());
  EXPECT_EQ(ct->scheme_for("model.layers.0.mlp.down_proj")->spec.bits, 8);
  EXPECT_EQ(ct->scheme_for("model.layers.0.mlp.up_proj")->spec, w4);
  EXPECT_EQ(ct->scheme_for("model.layers.1.mlp.down_proj"), nullptr);

  const QuantizedMatrix a = rtn_quantize(weights(9), w8), b = rtn_quantize(weights(10), w4);
  std::vector<OwnedTensor> tensors;
  for (const auto& [base, m] : {std::pair{std::string("model.layers.0.mlp.down_proj"), &a},
                                std::pair{std::string("model.layers.0.mlp.up_proj"), &b}}) {
    const CompressedLinear l = pack_compressed(*m, base);
    const auto words = [&](std::int64_t n) { return (n * l.bits + 31) / 32; };
    tensors.push_back(
        owned(base + ".weight_packed", DType::I32, {l.out, words(l.in)}, l.weight_packed));
    tensors.push_back(owned(base + ".weight_scale", DType::F16, {l.out, l.groups}, l.weight_scale));
    tensors.push_back(
        owned(base + ".weight_shape", DType::I64, {2}, std::vector<std::int64_t>{l.out, l.in}));
    if (!l.symmetric)
      tensors.push_back(owned(base + ".weight_zero_point", DType::I32, {words(l.out), l.groups},
                              l.weight_zero_point));
  }
  const Checkpoint packed = Checkpoint::from_memory("mem", std::move(tensors));
  const Checkpoint back = dequantized_compressed_checkpoint("mem", packed, *ct);
  for (const auto& [base, m] : {std::pair{std::string("model.layers.0.mlp.down_proj"), &a},
                                std::pair{std::string("model.layers.0.mlp.up_proj"), &b}}) {
    const TensorView& t = back.require(base + ".weight");
    const MatrixRM want = m->dequantize();
    ASSERT_EQ(t.bytes.size(), static_cast<std::size_t>(want.size()) * sizeof(float)) << base;
    EXPECT_EQ(std::memcmp(t.bytes.data(), want.data(), t.bytes.size()), 0) << base;
  }

  nlohmann::json mixed = config;
  mixed["quantization_config"]["config_groups"]["group_0"] =
      compressed_tensors_w8a8_config(CtActivations::token)["config_groups"]["group_0"];
  const auto w8a8 = read_compressed_tensors_config(mixed, "config.json");
  ASSERT_TRUE(w8a8.has_value());
  expect_input_error([&] { w8a8->activations("config.json"); }, "input_activations");
}

}  // namespace
}  // namespace ptq
