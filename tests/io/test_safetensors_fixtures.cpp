// The shared fixture checkpoints hold exactly the tensors their config.json
// implies (names and shapes derived here from the raw JSON, not via ptq).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

using Shapes = std::map<std::string, std::vector<std::int64_t>>;

Shapes expected_llama_tensors(const nlohmann::json& c) {
  const std::int64_t hidden = c["hidden_size"], inter = c["intermediate_size"],
                     vocab = c["vocab_size"];
  const std::int64_t heads = c["num_attention_heads"], kv = c["num_key_value_heads"],
                     hd = c["head_dim"];
  Shapes s{{"model.embed_tokens.weight", {vocab, hidden}}, {"model.norm.weight", {hidden}}};
  if (!c["tie_word_embeddings"].get<bool>()) s["lm_head.weight"] = {vocab, hidden};
  for (int i = 0; i < c["num_hidden_layers"].get<int>(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s[p + "input_layernorm.weight"] = {hidden};
    s[p + "post_attention_layernorm.weight"] = {hidden};
    s[p + "self_attn.q_proj.weight"] = {heads * hd, hidden};
    s[p + "self_attn.k_proj.weight"] = {kv * hd, hidden};
    s[p + "self_attn.v_proj.weight"] = {kv * hd, hidden};
    s[p + "self_attn.o_proj.weight"] = {hidden, heads * hd};
    s[p + "mlp.gate_proj.weight"] = {inter, hidden};
    s[p + "mlp.up_proj.weight"] = {inter, hidden};
    s[p + "mlp.down_proj.weight"] = {hidden, inter};
  }
  return s;
}

class FixtureCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureCheckpoint, TensorsMatchConfig) {
  const auto dir = test::fixture("models/" + GetParam());
  std::ifstream in(dir / "config.json");
  const auto expected = expected_llama_tensors(nlohmann::json::parse(in));

  const Checkpoint ckpt = Checkpoint::open(dir);
  Shapes found;
  std::uint64_t bytes = 0;
  for (const TensorView* t : ckpt.tensors()) {
    EXPECT_EQ(t->dtype, DType::F16) << t->name;
    found[t->name] = t->shape;
    bytes += static_cast<std::uint64_t>(t->numel()) * 2;
  }
  EXPECT_EQ(found, expected);
  EXPECT_EQ(ckpt.total_bytes(), bytes);
  // The data section is the file minus the 8-byte prefix and the header.
  EXPECT_LE(bytes, std::filesystem::file_size(dir / "model.safetensors"));
  EXPECT_EQ(&ckpt.require("model.norm.weight"), ckpt.find("model.norm.weight"));

  const auto norm = ckpt.require("model.norm.weight").to_float();
  EXPECT_TRUE(std::all_of(norm.begin(), norm.end(), [](float v) { return std::isfinite(v); }));
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureCheckpoint, ::testing::Values("tiny", "small"));

TEST(FixtureCheckpoint, MetadataIsRead) {
  auto file = SafetensorsFile::open(test::fixture("models/tiny/model.safetensors"));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->tensors().size(), 39u);
}

}  // namespace
}  // namespace ptq
