// bitsandbytes' 4-bit Linear tensors (pipeline/formats/bnb_pack.hpp): codes two
// to a byte with the first of each pair in the high nibble (bitsandbytes'
// quantize_4bit: packed = q[0::2] << 4 | q[1::2]); pack -> unpack gives back the
// NF4 codes, absmax codes, nested scales and offset; the file's own tables
// dequantize to the grid's weights rounded to the state's dtype; a file without
// double quantization (bitsandbytes' default) dequantizes too; the quant state
// and the Linear read back from a checkpoint; bad block sizes, tensors and
// states are InputErrors naming the tensor or key.
#include "pipeline/formats/bnb_pack.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "io/dtype.hpp"
#include "packed_test_util.hpp"

namespace ptq {
namespace {

using test::owned;

using test::expect_input_error;

Nf4Matrix grid(unsigned seed, int block = 64) {
  return nf4_quantize(test::packed_test_weights(seed), Nf4Config{block, 256});
}

// The Linear "l" as a checkpoint, as the output writer lays it out.
std::vector<OwnedTensor> tensors_of(const BnbLinear& l, const std::string& state) {
  const auto n = [](const auto& v) { return static_cast<std::int64_t>(v.size()); };
  std::vector<OwnedTensor> t = {owned("l.weight", DType::U8, {n(l.weight), 1}, l.weight),
                                owned("l.weight.quant_map", DType::F32, {16}, l.quant_map),
                                owned("l.weight.quant_state.bitsandbytes__nf4", DType::U8,
                                      {n(state)}, std::vector<char>(state.begin(), state.end()))};
  if (!l.nested()) {
    t.push_back(owned("l.weight.absmax", DType::F32, {n(l.absmax)}, l.absmax));
    return t;
  }
  t.push_back(owned("l.weight.absmax", DType::U8, {n(l.absmax_codes)}, l.absmax_codes));
  t.push_back(owned("l.weight.nested_absmax", DType::F32, {n(l.nested_absmax)}, l.nested_absmax));
  t.push_back(owned("l.weight.nested_quant_map", DType::F32, {256}, l.nested_quant_map));
  return t;
}

BnbLinear read_back(const BnbLinear& l, const std::string& state) {
  return read_bnb_linear(Checkpoint::from_memory("mem", tensors_of(l, state)), "l", "mem: l");
}

TEST(BnbPack, FirstCodeOfAPairInTheHighNibble) {
  Nf4Matrix m = grid(1);
  m.codes[0] = 0x3;
  m.codes[1] = 0xC;
  m.codes[2] = 0xF;
  m.codes[3] = 0x0;
  const BnbLinear l = pack_bnb_nf4(m, DType::F16, "test");
  ASSERT_EQ(l.weight.size(), m.codes.size() / 2);
  EXPECT_EQ(l.weight[0], 0x3C);
  EXPECT_EQ(l.weight[1], 0xF0);
}

TEST(BnbPack, RoundTripsTheGridAndDequantizesAsBitsandbytes) {
  for (int block : {64, 128}) {
    const Nf4Matrix m = grid(2, block);
    for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
      SCOPED_TRACE(std::to_string(block) + " " + std::string(dtype_name(dtype)));
      const BnbLinear l = pack_bnb_nf4(m, dtype, "test");
      const BnbLinear back = read_back(l, bnb_quant_state_json(l));
      const Nf4Matrix u = unpack_bnb_nf4(back, "test");
      EXPECT_EQ(u.codes, m.codes);
      EXPECT_EQ(u.absmax_codes, m.absmax_codes);
      EXPECT_EQ(u.absmax_scales, m.absmax_scales);
      EXPECT_EQ(u.absmax_offset, m.absmax_offset);
      EXPECT_EQ(u.config.block_size, block);
      EXPECT_EQ(back.dtype, dtype);
      const MatrixRM want = m.dequantize();
      const MatrixRM got = dequantize_bnb(back);
      ASSERT_EQ(got.rows(), want.rows());
      for (Eigen::Index k = 0; k < want.size(); ++k) {
        const float w = want.data()[k];
        const float rounded = dtype == DType::F16    ? half_to_float(float_to_half(w))
                              : dtype == DType::BF16 ? bf16_to_float(float_to_bf16(w))
                                                     : w;
        ASSERT_EQ(got.data()[k], rounded) << k;
      }
    }
  }
}

TEST(BnbPack, QuantStateHasBitsandbytesKeys) {
  const BnbLinear l = pack_bnb_nf4(grid(3), DType::F16, "test");
  const auto j = nlohmann::json::parse(bnb_quant_state_json(l));
  EXPECT_EQ(j.at("quant_type"), "nf4");
  EXPECT_EQ(j.at("blocksize"), 64);
  EXPECT_EQ(j.at("dtype"), "float16");
  EXPECT_EQ(j.at("shape"), nlohmann::json({test::kPackedOut, test::kPackedIn}));
  EXPECT_EQ(j.at("nested_blocksize"), 256);
  EXPECT_EQ(j.at("nested_dtype"), "float32");
  EXPECT_EQ(static_cast<float>(j.at("nested_offset").get<double>()), l.nested_offset);
}

// bitsandbytes' default (no double quantization): float32 absmax, dequantized
// from the file; not ptq's NF4 grid.
TEST(BnbPack, PlainAbsmaxDequantizes) {
  const Nf4Matrix m = grid(4);
  BnbLinear l = pack_bnb_nf4(m, DType::F32, "test");
  l.absmax = m.absmax();
  l.absmax_codes.clear();
  l.nested_absmax.clear();
  l.nested_quant_map.clear();
  const BnbLinear back = read_back(l, bnb_quant_state_json(l));
  EXPECT_FALSE(back.nested());
  EXPECT_EQ(dequantize_bnb(back), m.dequantize());
  expect_input_error([&] { unpack_bnb_nf4(back, "plain"); }, "double-quantized");
}

TEST(BnbPack, BadBlocksTensorsAndStatesAreInputErrors) {
  expect_input_error([&] { pack_bnb_nf4(grid(5, 32), DType::F16, "w"); }, "NF4 block size");
  expect_input_error([&] { pack_bnb_nf4(grid(5), DType::I32, "w"); }, "float16, bfloat16");
  const BnbLinear l = pack_bnb_nf4(grid(5), DType::F16, "test");
  const std::string state = bnb_quant_state_json(l);
  BnbLinear cut = l;
  cut.weight.pop_back();
  expect_input_error([&] { read_back(cut, state); }, "weight");
  cut = l;
  cut.nested_absmax.push_back(1.0f);
  expect_input_error([&] { read_back(cut, state); }, "nested_absmax");
  cut = l;
  cut.quant_map[3] = 0.5f;
  expect_input_error([&] { unpack_bnb_nf4(read_back(cut, state), "l"); }, "quant_map");
  struct Edit {
    const char* key;
    nlohmann::json value;
    const char* message;
  };
  const Edit edits[] = {
      {"quant_type", "fp4", "quant_type"}, {"blocksize", 48, "blocksize"},
      {"dtype", "int8", "dtype"},          {"shape", {64}, "shape"},
      {"shape", {64, 64}, "weight"},       {"nested_offset", "x", "nested_offset"}};
  for (const Edit& e : edits) {
    SCOPED_TRACE(e.key);
    nlohmann::json j = nlohmann::json::parse(state);
    j[e.key] = e.value;
    expect_input_error([&] { read_back(l, j.dump()); }, e.message);
  }
  nlohmann::json j = nlohmann::json::parse(state);
  j.erase("dtype");
  expect_input_error([&] { read_back(l, j.dump()); }, "\"dtype\"");
  expect_input_error([&] { read_back(l, "{not json"); }, "quant_state");
  std::vector<OwnedTensor> t = tensors_of(l, state);
  t.erase(t.begin() + 1);  // quant_map
  expect_input_error(
      [&] { read_bnb_linear(Checkpoint::from_memory("mem", std::move(t)), "l", "l"); },
      "quant_map");
}

TEST(BnbPack, QuantizationConfigReadsBack) {
  nlohmann::json config = {{"quantization_config", bnb_quantization_config(DType::BF16)}};
  EXPECT_EQ(config["quantization_config"]["bnb_4bit_compute_dtype"], "bfloat16");
  EXPECT_TRUE(read_bnb_quantization_config(config, "config.json"));
  EXPECT_FALSE(read_bnb_quantization_config(nlohmann::json::object(), "config.json"));
  config["quantization_config"]["bnb_4bit_quant_type"] = "fp4";
  expect_input_error([&] { read_bnb_quantization_config(config, "config.json"); }, "nf4");
  config["quantization_config"]["load_in_4bit"] = false;
  expect_input_error([&] { read_bnb_quantization_config(config, "config.json"); }, "8-bit");
}

}  // namespace
}  // namespace ptq
