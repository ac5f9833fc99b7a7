// mix.json (pipeline/formats/mix_file.hpp): read back as written, and every
// defect refused naming the file, the entry and what was wrong; a GGUF choice
// (pipeline/formats/gguf_types.hpp) checked against tiny's tensors (every
// weight typed, a type ptq writes, blocks that fit its rows, no stranger).
#include "pipeline/formats/gguf_types.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "packed_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr std::uint32_t kQ4_K = 12, kIQ4_XS = 23, kQ8_0 = 8;

std::filesystem::path written(const std::string& name, const std::string& text) {
  const auto path = test::temp_dir("gguf-types") / name;
  std::ofstream(path) << text;
  return path;
}

TEST(MixFile, RoundTrips) {
  const MixTypes types = {{"blk.0.attn_q.weight", "Q4_K"}, {"output.weight", "IQ4_XS"}};
  EXPECT_EQ(read_mix_types(written("ok.json", mix_types_json(types, "gguf")), "gguf"), types);
  EXPECT_EQ(gguf_type_map(types, "ok"),
            (GgufTypeMap{{"blk.0.attn_q.weight", kQ4_K}, {"output.weight", kIQ4_XS}}));
  EXPECT_EQ(gguf_type_names(gguf_type_map(types, "ok")), types);
}

TEST(MixFile, DefectsAreNamed) {
  const std::string head = R"({"format": "ptq-mix", "version": 1, "output": "gguf", )";
  const struct {
    std::string text, needle;
  } cases[] = {
      {R"({"format": "gguf", "version": 1, "output": "gguf", "tensors": []})", "format"},
      {R"({"format": "ptq-mix", "version": 2, "output": "gguf", "tensors": []})", "version"},
      {R"({"format": "ptq-mix", "version": 1, "output": "compressed-tensors", "tensors": []})",
       "output"},
      {head + R"("tensors": {}})", "tensors"},
      {head + R"("tensors": [{"name": "a", "type": "Q4_K"}, {"name": "b", "type": 4}]})",
       "tensors[1].type"},
      {head + R"("tensors": [{"type": "Q4_K"}]})", "\"name\""},
      {head + R"("tensors": [{"name": "a", "type": "Q4_K"}, {"name": "a", "type": "Q8_0"}]})",
       "a again"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const auto path = written("bad.json", c.text);
    test::expect_input_error([&] { read_mix_types(path, "gguf"); }, path.string());
    test::expect_input_error([&] { read_mix_types(path, "gguf"); }, c.needle);
  }
  for (const char* type : {"Q9_X", "IQ2_XXS"})
    test::expect_input_error([&] { gguf_type_map({{"b", type}}, "mix"); }, "mix: b");
}

TEST(MixFile, GgufTypesCheckedAgainstTheModel) {
  const auto dir = test::fixture("models/tiny");
  const auto plan = gguf_tensor_plan(load_model_config(dir), Checkpoint::open(dir));
  GgufTypeMap types;
  for (const GgufTensorPlan& p : plan)
    if (p.storage == GgufStorage::weight) types[p.gguf_name] = kQ4_K;
  check_gguf_types(types, plan, "choice");

  GgufTypeMap missing = types;
  missing.erase("blk.2.ffn_up.weight");
  test::expect_input_error([&] { check_gguf_types(missing, plan, "choice"); }, "blk.2.ffn_up.weight");
  GgufTypeMap stranger = types;
  stranger["blk.9.attn_q.weight"] = kQ8_0;
  test::expect_input_error([&] { check_gguf_types(stranger, plan, "choice"); }, "blk.9.attn_q.weight");
  GgufTypeMap norm = types;
  norm["blk.0.attn_norm.weight"] = kQ8_0;  // stored F32 whatever the type
  test::expect_input_error([&] { check_gguf_types(norm, plan, "choice"); }, "blk.0.attn_norm.weight");

  // Rows of 96 weights: Q8_0's blocks of 32 fit, Q4_K's super-blocks of 256 do not.
  const GgufTensorPlan narrow{"w", "blk.0.ffn_down.weight", {96, 8}, 0, GgufStorage::weight};
  check_gguf_types({{narrow.gguf_name, kQ8_0}}, {&narrow, 1}, "choice");
  test::expect_input_error(
      [&] { check_gguf_types({{narrow.gguf_name, kQ4_K}}, {&narrow, 1}, "choice"); },
      "blocks divide its rows of 96");
}

}  // namespace
}  // namespace ptq
