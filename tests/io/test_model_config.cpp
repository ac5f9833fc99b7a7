// config.json parsing: the fixtures, one hand-written config per architecture,
// and malformed configs.
#include <gtest/gtest.h>

#include <cmath>

#include "io/model_config.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

ModelConfig load_text(const std::string& json_text) {
  const auto dir = test::temp_dir("cfg");
  test::write_text(dir / "config.json", json_text);
  return load_model_config(dir);
}

TEST(ModelConfig, FixturesMatchTheirDocumentedShape) {
  // Values from PROTOCOL.md's model table (an independent description).
  const ModelConfig tiny = load_model_config(test::fixture("models/tiny"));
  EXPECT_EQ(tiny.arch, Architecture::Llama);
  EXPECT_EQ(tiny.hidden_size, 256);
  EXPECT_EQ(tiny.num_layers, 4);
  EXPECT_EQ(tiny.num_heads, 4);
  EXPECT_EQ(tiny.num_kv_heads, 2);
  EXPECT_EQ(tiny.intermediate_size, 768);
  EXPECT_EQ(tiny.vocab_size, 2048);
  EXPECT_FALSE(tiny.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(tiny.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(tiny.rope.theta, 10000.0);
  EXPECT_EQ(tiny.rope.type, RopeType::Default);
  EXPECT_EQ(tiny.eos_token_ids, std::vector<int>{0});
  EXPECT_EQ(tiny.bos_token_id, 0);

  const ModelConfig small = load_model_config(test::fixture("models/small/config.json"));
  EXPECT_EQ(small.hidden_size, 512);
  EXPECT_EQ(small.num_layers, 6);
  EXPECT_EQ(small.num_heads, 8);
  EXPECT_EQ(small.num_kv_heads, 4);
  EXPECT_EQ(small.intermediate_size, 1280);
  EXPECT_EQ(small.vocab_size, 8192);
  EXPECT_TRUE(small.tie_word_embeddings);
  EXPECT_FALSE(small.attention_bias || small.mlp_bias || small.qk_norm);
}

TEST(ModelConfig, LlamaOldStyleRopeScalingLlama3) {
  const auto c =
      load_text(R"({"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
  EXPECT_EQ(c.head_dim, 64);  // hidden / heads
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.type, RopeType::Llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(ModelConfig, MistralDefaultsKvHeadsAndNullHeadDim) {
  const auto c =
      load_text(R"({"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000, "head_dim": null,
    "rope_theta": 1000000.0, "rope_scaling": null, "sliding_window": null, "eos_token_id": 2})");
  EXPECT_EQ(c.arch, Architecture::Mistral);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.bos_token_id, -1);
}

TEST(ModelConfig, Qwen2HasAttentionBiasByDefinition) {
  const auto c = load_text(R"({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true})");
  EXPECT_EQ(c.arch, Architecture::Qwen2);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 64);
}

TEST(ModelConfig, Qwen3NewStyleRopeParametersAndQkNorm) {
  const auto c =
      load_text(R"({"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
    "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 151936, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "attention_bias": false})");
  EXPECT_EQ(c.arch, Architecture::Qwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 128);  // explicit, not hidden / heads (= 64)
  EXPECT_DOUBLE_EQ(c.rope.theta, 1000000.0);
  EXPECT_EQ(architecture_name(c.arch), "qwen3");
}

TEST(ModelConfig, Phi3LongRopeStretchAndAttentionFactor) {
  // Phi-3-mini-128k's shape (old-style rope_scaling, the original context at the top
  // level), at head_dim 8: factor 131072 / 4096 = 32, and attention_factor
  // sqrt(1 + ln 32 / ln 4096) = sqrt(1 + 5/12).
  const auto c = load_text(R"({"model_type": "phi3", "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0, "sliding_window": 262144, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
    "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.3],
      "long_factor": [1.0, 2.0, 4.0, 8.0]}})");
  EXPECT_EQ(c.arch, Architecture::Phi3);
  EXPECT_EQ(c.rope.type, RopeType::LongRope);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_NEAR(c.rope.attention_factor, std::sqrt(17.0 / 12.0), 1e-12);
  EXPECT_EQ(c.rope.long_factor, (std::vector<double>{1.0, 2.0, 4.0, 8.0}));
  EXPECT_EQ(c.sliding_window, 262144);  // Phi-3 applies its window, as Mistral does
}

// Gemma 2 as transformers writes it (tests/data/models/gemma2), and the
// defaults an older, sparser config falls back to (transformers' Gemma2Config).
TEST(ModelConfig, Gemma2SandwichNormsSoftcapsAndSlidingLayers) {
  const auto c = load_model_config(test::source_dir() / "tests/data/models/gemma2");
  EXPECT_EQ(c.arch, Architecture::Gemma2);
  EXPECT_EQ(c.activation, Activation::gelu_tanh);
  EXPECT_TRUE(c.norm_plus_one && c.sandwich_norms && c.tie_word_embeddings);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_DOUBLE_EQ(c.embed_scale, 8.0);  // sqrt(64)
  EXPECT_DOUBLE_EQ(c.query_scale, 1.0 / std::sqrt(24.0));
  EXPECT_DOUBLE_EQ(c.attn_logit_softcap, 50.0);
  EXPECT_DOUBLE_EQ(c.final_logit_softcap, 30.0);
  EXPECT_EQ(c.sliding_window, 16);
  EXPECT_EQ(c.sliding_layers, (std::vector<char>{1, 0, 1, 0}));
  c.check_sequence_length(4096);  // the window is computed, not refused
  const auto sparse = load_text(R"({"model_type": "gemma2", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "head_dim": 16,
    "vocab_size": 100, "final_logit_softcapping": null})");
  EXPECT_DOUBLE_EQ(sparse.query_scale, 1.0 / 16.0);  // query_pre_attn_scalar 256
  EXPECT_DOUBLE_EQ(sparse.attn_logit_softcap, 50.0);
  EXPECT_DOUBLE_EQ(sparse.final_logit_softcap, 0.0);  // null: none
  EXPECT_EQ(sparse.sliding_window, 4096);
  EXPECT_EQ(sparse.sliding_layers, (std::vector<char>{1, 0, 1}));
  // Without head_dim, Gemma's heads are 256 wide, not hidden / heads (16 here).
  const auto no_head_dim = load_text(R"({"model_type": "gemma2", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "vocab_size": 100})");
  EXPECT_EQ(no_head_dim.head_dim, 256);
}

// Gemma 3: q/k norms, per-layer-type RoPE (new style), or rope_local_base_freq
// and linear scaling of the global layers (old style), and its layer pattern.
TEST(ModelConfig, Gemma3RopePerLayerType) {
  const auto c = load_model_config(test::source_dir() / "tests/data/models/gemma3");
  EXPECT_EQ(c.arch, Architecture::Gemma3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_DOUBLE_EQ(c.attn_logit_softcap, 0.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(c.local_rope.theta, 1e4);
  const auto old_style = load_text(R"({"model_type": "gemma3_text", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 7, "num_attention_heads": 4, "head_dim": 16,
    "vocab_size": 100, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 6})");
  EXPECT_EQ(old_style.rope.type, RopeType::Linear);
  EXPECT_DOUBLE_EQ(old_style.rope.factor, 8.0);
  EXPECT_EQ(old_style.local_rope.type, RopeType::Default);
  EXPECT_DOUBLE_EQ(old_style.local_rope.theta, 1e4);
  EXPECT_EQ(old_style.sliding_layers, (std::vector<char>{1, 1, 1, 1, 1, 0, 1}));
}

constexpr const char* kGemmaSizes =
    R"("model_type": "gemma2", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 16, "vocab_size": 100)";

TEST(ModelConfigCorrupt, GemmaFieldsTheForwardDoesNotImplementAreRefused) {
  test::expect_input_error(
      [] { load_text(std::string("{") + kGemmaSizes + R"(, "hidden_activation": "gelu"})"); },
      {"config.json: hidden_activation", "gelu_pytorch_tanh", "\"gelu\""});
  test::expect_input_error(
      [] {
        load_text(std::string("{") + kGemmaSizes + R"(, "use_bidirectional_attention": true})");
      },
      {"use_bidirectional_attention", "true"});
  test::expect_input_error(
      [] { load_text(std::string("{") + kGemmaSizes + R"(, "layer_types": ["full_attention"]})"); },
      {"layer_types", "2 entries"});
  test::expect_input_error(
      [] {
        load_text(std::string("{") + kGemmaSizes +
                  R"(, "layer_types": ["full_attention", "chunked_attention"]})");
      },
      {"layer_types", "chunked_attention"});
}

// Mixtral and Qwen3-MoE as transformers writes them (tests/data/models), and
// Qwen3-MoE's dense layers (decoder_sparse_step, mlp_only_layers) and default
// of unnormalized top-k weights.
TEST(ModelConfig, MixturesOfExperts) {
  const auto mixtral = load_model_config(test::source_dir() / "tests/data/models/mixtral");
  EXPECT_EQ(mixtral.arch, Architecture::Mixtral);
  EXPECT_EQ(mixtral.moe.experts, 4);
  EXPECT_EQ(mixtral.moe.experts_per_token, 2);
  EXPECT_EQ(mixtral.moe.intermediate_size, 128);  // intermediate_size
  EXPECT_TRUE(mixtral.moe.normalize_top_k);
  EXPECT_EQ(mixtral.moe.layers, (std::vector<char>{1, 1, 1, 1}));
  const auto qwen = load_model_config(test::source_dir() / "tests/data/models/qwen3moe");
  EXPECT_EQ(qwen.arch, Architecture::Qwen3Moe);
  EXPECT_TRUE(qwen.qk_norm);
  EXPECT_EQ(qwen.moe.experts, 8);
  EXPECT_EQ(qwen.moe.intermediate_size, 32);  // moe_intermediate_size
  EXPECT_TRUE(qwen.moe.normalize_top_k);
  const auto sparse = load_text(R"({"model_type": "qwen3_moe", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 6, "num_attention_heads": 4, "head_dim": 16,
    "vocab_size": 100, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
    "decoder_sparse_step": 2, "mlp_only_layers": [3]})");
  EXPECT_FALSE(sparse.moe.normalize_top_k);
  EXPECT_EQ(sparse.moe.layers, (std::vector<char>{0, 1, 0, 0, 0, 1}));
  EXPECT_FALSE(sparse.is_moe(3));
}

TEST(ModelConfigCorrupt, MixtureOfExpertsCountsAreChecked) {
  const std::string sizes = R"("model_type": "qwen3_moe", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)";
  test::expect_input_error(
      [&] { load_text("{" + sizes + R"(, "num_experts": 4, "num_experts_per_tok": 5})"); },
      {"num_experts_per_tok", "between 1 and the expert count (4)", "5"});
  test::expect_input_error(
      [&] { load_text("{" + sizes + R"(, "num_experts": 4, "num_local_experts": 8})"); },
      {"num_local_experts", "num_experts (4)", "8"});
  test::expect_input_error([&] { load_text("{" + sizes + R"(, "mlp_only_layers": [2]})"); },
                           {"mlp_only_layers", "below 2", "[2]"});
}

constexpr const char* kSizes =
    R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "vocab_size": 100)";

TEST(ModelConfigCorrupt, UnknownModelTypeListsSupported) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "gpt2", "num_attention_heads": 4, )") + kSizes +
                  "}");
      },
      {"model_type", "llama, mistral, qwen2, qwen3", "\"gpt2\""});
}

TEST(ModelConfigCorrupt, MissingHiddenSize) {
  test::expect_input_error(
      [] {
        load_text(R"({"model_type": "llama", "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})");
      },
      {"config.json: hidden_size", "positive integer", "none"});
}

TEST(ModelConfigCorrupt, KvHeadsNotDividingHeads) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 4,
      "num_key_value_heads": 3, )") +
                  kSizes + "}");
      },
      {"num_key_value_heads", "divisor of num_attention_heads (4)", "found 3"});
}

TEST(ModelConfigCorrupt, HiddenNotDivisibleByHeadsWithoutHeadDim) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 5, )") + kSizes +
                  "}");
      },
      {"hidden_size", "multiple of num_attention_heads (5)", "found 64"});
}

TEST(ModelConfigCorrupt, UnsupportedRopeType) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 4,
      "rope_scaling": {"type": "yarn", "factor": 4.0}, )") +
                  kSizes + "}");
      },
      {"rope_scaling: rope_type", "default, linear, llama3", "\"yarn\""});
}

TEST(ModelConfigCorrupt, Llama3RopeMissingFactor) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 4,
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}, )") +
                  kSizes + "}");
      },
      {"rope_parameters: factor", "a number", "none"});
}

TEST(ModelConfigCorrupt, LongRopeFactorsMustCoverHalfTheHeadDim) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "phi3", "num_attention_heads": 4,
      "rope_parameters": {"rope_type": "longrope", "short_factor": [1, 1, 1],
        "long_factor": [2, 2, 2], "original_max_position_embeddings": 32}, )") +
                  kSizes + "}");
      },
      {"short_factor / long_factor", "8 factors each (head_dim / 2)", "3 and 3"});
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "phi3", "num_attention_heads": 4,
      "rope_parameters": {"rope_type": "longrope", "short_factor": [1, 0, 1, 1, 1, 1, 1, 1],
        "long_factor": [2, 2, 2, 2, 2, 2, 2, 2]}, )") +
                  kSizes + "}");
      },
      {"rope_parameters: short_factor", "a list of positive numbers"});
}

TEST(ModelConfigCorrupt, PartialRotaryFactorInTheRopeSectionIsRefused) {
  // Phi-4-mini rotates 3/4 of each head; ptq's forward rotates all of it.
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "phi3", "num_attention_heads": 4,
      "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.75}, )") +
                  kSizes + "}");
      },
      {"rope_parameters: partial_rotary_factor", "1 (what ptq's forward implements)", "0.75"});
}

TEST(ModelConfigCorrupt, StringWhereIntegerExpected) {
  test::expect_input_error(
      [] {
        load_text(R"({"model_type": "llama", "hidden_size": "64", "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})");
      },
      {"hidden_size", "integer", "string \"64\""});
}

TEST(ModelConfigCorrupt, NotJsonAndDuplicateKey) {
  test::expect_input_error([] { load_text("{\"model_type\": \"llama\",,}"); },
                           {"config.json", "valid JSON"});
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 4,
      "hidden_size": 32, )") +
                  kSizes + "}");
      },
      {"config.json", "key \"hidden_size\" twice"});
}

TEST(ModelConfigCorrupt, BadEosList) {
  test::expect_input_error(
      [] {
        load_text(std::string(R"({"model_type": "llama", "num_attention_heads": 4,
      "eos_token_id": [1, "x"], )") +
                  kSizes + "}");
      },
      {"eos_token_id", "list of token ids"});
}

}  // namespace
}  // namespace ptq
