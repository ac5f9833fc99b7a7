// The random-weight reference checkpoints in tests/data/models (written by HF
// transformers): tensors and config values must match MANIFEST.json, which
// the generator script recorded independently of ptq.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

const std::filesystem::path kModels = test::source_dir() / "tests/data/models";

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(kModels / "MANIFEST.json");
    return nlohmann::json::parse(in)["models"];
  }();
  return m;
}

class ReferenceCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceCheckpoint, TensorsMatchManifest) {
  const auto& entry = manifest().at(GetParam());
  const Checkpoint ckpt = Checkpoint::open(kModels / GetParam());
  const DType dtype = entry["dtype"] == "bfloat16" ? DType::BF16 : DType::F16;
  std::map<std::string, std::vector<std::int64_t>> found;
  for (const TensorView* t : ckpt.tensors()) {
    found[t->name] = t->shape;
    EXPECT_EQ(t->dtype, dtype) << t->name;
  }
  EXPECT_EQ(found, (entry["tensors"].get<std::map<std::string, std::vector<std::int64_t>>>()));
}

TEST_P(ReferenceCheckpoint, ConfigMatchesManifest) {
  const auto& cj = manifest().at(GetParam())["config_json"];
  const ModelConfig c = load_model_config(kModels / GetParam());
  EXPECT_EQ(c.model_type, cj["model_type"]);
  EXPECT_EQ(c.hidden_size, cj["hidden_size"]);
  EXPECT_EQ(c.intermediate_size, cj["intermediate_size"]);
  EXPECT_EQ(c.num_layers, cj["num_hidden_layers"]);
  EXPECT_EQ(c.num_heads, cj["num_attention_heads"]);
  EXPECT_EQ(c.num_kv_heads, cj["num_key_value_heads"]);
  EXPECT_EQ(c.vocab_size, cj["vocab_size"]);
  EXPECT_EQ(c.tie_word_embeddings, cj["tie_word_embeddings"]);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, cj["rms_norm_eps"].get<double>());
  EXPECT_DOUBLE_EQ(c.rope.theta, cj["rope_parameters"]["rope_theta"].get<double>());
  EXPECT_EQ(c.rope.type == RopeType::Llama3, cj["rope_parameters"]["rope_type"] == "llama3");
  if (cj.contains("head_dim")) {
    EXPECT_EQ(c.head_dim, cj["head_dim"]);
  }
  // The shapes in the manifest fix what the config must imply.
  const auto& tensors = manifest().at(GetParam())["tensors"];
  const auto& q = tensors["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_EQ(c.num_heads * c.head_dim, q[0].get<int>());
  EXPECT_EQ(c.attention_bias, tensors.contains("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_EQ(c.qk_norm, tensors.contains("model.layers.0.self_attn.q_norm.weight"));
  EXPECT_EQ(c.tie_word_embeddings, !tensors.contains("lm_head.weight"));
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceCheckpoint,
                         ::testing::Values("mistral", "qwen2", "qwen3", "llama3rope",
                                           "llama3rope_band"));

TEST(ReferenceCheckpoint, OldStyleRopeEqualsNewStyle) {
  for (const char* name : {"llama3rope", "llama3rope_band"}) {
    const auto& rp = manifest().at(name)["config_json"]["rope_parameters"];
    const ModelConfig fresh = load_model_config(kModels / name / "config.json");
    const ModelConfig old = load_model_config(kModels / name / "config_oldstyle.json");
    for (const ModelConfig* c : {&fresh, &old}) {
      EXPECT_EQ(c->rope.type, RopeType::Llama3) << name;
      EXPECT_DOUBLE_EQ(c->rope.theta, rp["rope_theta"].get<double>()) << name;
      EXPECT_DOUBLE_EQ(c->rope.factor, rp["factor"].get<double>()) << name;
      EXPECT_DOUBLE_EQ(c->rope.low_freq_factor, rp["low_freq_factor"].get<double>()) << name;
      EXPECT_DOUBLE_EQ(c->rope.high_freq_factor, rp["high_freq_factor"].get<double>()) << name;
      EXPECT_EQ(c->rope.original_max_position_embeddings,
                rp["original_max_position_embeddings"].get<int>())
          << name;
    }
  }
}

}  // namespace
}  // namespace ptq
