// Logits of the fixture models against the goldens computed with HF
// transformers in float32 (shared/fixtures/goldens/<m>/logits_prompt.*).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "calibrate/model.hpp"
#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr float golden_logits_tolerance = 1e-3f;  // PROTOCOL.md: expect |diff| < 1e-3
// tests/data/models/README.md: an fp32 forward should match to about 1e-4
// (logits |max| ~ 6; HF itself differs by 4e-6 between two machines).
constexpr float random_model_tolerance = 1e-4f;

// Max |ours - golden| over all logits of ids in one sequence.
float max_logit_error(const std::filesystem::path& model_dir, const std::filesystem::path& ids_file,
                      const std::filesystem::path& logits_file) {
  const Model model = Model::open(model_dir);
  const std::vector<std::int32_t> ids = read_ids(ids_file);
  const std::vector<float> golden = test::read_f32(logits_file);
  const MatrixRM ours = logits(model, ids, static_cast<int>(ids.size()));
  EXPECT_EQ(static_cast<std::size_t>(ours.size()), golden.size());
  const Eigen::Map<const MatrixRM> expected(golden.data(), ours.rows(), ours.cols());
  return (ours - expected).cwiseAbs().maxCoeff();
}

class GoldenLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLogits, PromptLogitsMatchFloat32Reference) {
  const std::string m = GetParam();
  const float err = max_logit_error(test::fixture("models/" + m),
                                    test::fixture("goldens/" + m + "/logits_prompt.ids"),
                                    test::fixture("goldens/" + m + "/logits_prompt.f32"));
  RecordProperty("max_abs_error", std::to_string(err));
  EXPECT_LT(err, golden_logits_tolerance) << m;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenLogits, ::testing::Values("tiny", "small"));

// The Qwen3-MoE model trained on real text by tests/data/train_model.py (tiny's
// tokenizer, so tiny's prompt): a router that training made decisive.
TEST(GoldenLogits, TrainedMixtureMatchesFloat32Reference) {
  const auto dir = test::source_dir() / "tests/data/models/qwen3moe-trained";
  const float err = max_logit_error(dir, test::fixture("goldens/tiny/logits_prompt.ids"),
                                    dir / "logits_prompt.f32");
  RecordProperty("max_abs_error", std::to_string(err));
  EXPECT_LT(err, golden_logits_tolerance);
}

// Random-weight Mistral (sharded), Qwen2 (q/k/v biases, tied), Qwen3 (q/k
// norms, head_dim != hidden/heads, bf16), Llama with llama3 RoPE scaling
// (two settings covering all three frequency bands), Phi-3 (fused qkv_proj and
// gate_up_proj; with LongRoPE past its original context: the long factors and the
// attention factor), Gemma 2 (norms around each sublayer as 1 + w, GeGLU, the
// embedding scale, query_pre_attn_scalar, attention and final soft-capping,
// sliding-window layers of 16 positions over 96 tokens) and Gemma 3 (q/k norms,
// another RoPE base on its sliding layers, no soft-capping), Mixtral (4
// experts, top 2 renormalized) and Qwen3-MoE (8 experts of their own width,
// top 2, norm_topk_prob), each MoE model in both expert layouts (one tensor
// per expert Linear, and v5's stacked experts.gate_up_proj / down_proj);
// logits from HF transformers.
class RandomModelLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(RandomModelLogits, MatchTransformersFloat32) {
  const auto dir = test::source_dir() / "tests/data/models" / GetParam();
  const float err = max_logit_error(dir, dir / "ref_ids.ids", dir / "ref_logits.f32");
  RecordProperty("max_abs_error", std::to_string(err));
  EXPECT_LT(err, random_model_tolerance) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Architectures, RandomModelLogits,
                         ::testing::Values("mistral", "qwen2", "qwen3", "llama3rope",
                                           "llama3rope_band", "phi3", "phi3-longrope", "gemma2",
                                           "gemma3", "mixtral", "mixtral-fused", "qwen3moe",
                                           "qwen3moe-fused"),
                         test::FolderName());

// The routers' logits at every layer against transformers' (router_logits.f32,
// [layers, tokens, experts]), the residual stream reaching each layer being
// ptq's own: the router, and through it the experts' choice, as transformers.
class RouterLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(RouterLogits, MatchTransformersAtEveryLayer) {
  const auto dir = test::source_dir() / "tests/data/models" / GetParam();
  const Model model = Model::open(dir);
  const std::vector<std::int32_t> ids = read_ids(dir / "ref_ids.ids");
  const std::vector<float> golden = test::read_f32(dir / "router_logits.f32");
  const auto tokens = static_cast<Eigen::Index>(ids.size());
  const int experts = model.config().moe.experts;
  ASSERT_EQ(golden.size(), static_cast<std::size_t>(model.num_layers() * tokens * experts));
  ForwardOptions options;
  int layers_seen = 0;
  float worst = 0;
  options.router_logits = [&](int layer, const MatrixRM& ours) {
    ASSERT_EQ(ours.rows(), tokens);
    ASSERT_EQ(ours.cols(), experts);
    const Eigen::Map<const MatrixRM> expected(golden.data() + layer * tokens * experts, tokens,
                                              experts);
    worst = std::max(worst, (ours - expected).cwiseAbs().maxCoeff());
    ++layers_seen;
  };
  BlockSource blocks(model, 0);
  final_hidden(model, blocks, ids, static_cast<int>(ids.size()), options);
  EXPECT_EQ(layers_seen, model.num_layers());
  RecordProperty("max_abs_error", std::to_string(worst));
  EXPECT_LT(worst, random_model_tolerance) << GetParam();
}

// Memory budgets count a mixture layer whole: the router and every expert.
TEST_P(RouterLogits, BlockWeightsCountEveryExpert) {
  const Model model = Model::open(test::source_dir() / "tests/data/models" / GetParam());
  const BlockWeights w = model.load_block(0);
  std::int64_t loaded = w.router.size();
  for (const MatrixRM& m : w.linear) loaded += m.size();
  for (const ExpertWeights& e : w.experts) loaded += e.gate.size() + e.up.size() + e.down.size();
  EXPECT_EQ(block_linear_weights(model.config()), loaded);
}

INSTANTIATE_TEST_SUITE_P(MixturesOfExperts, RouterLogits,
                         ::testing::Values("mixtral", "mixtral-fused", "qwen3moe",
                                           "qwen3moe-fused"),
                         test::FolderName());

}  // namespace
}  // namespace ptq
