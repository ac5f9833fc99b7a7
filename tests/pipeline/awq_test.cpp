// AWQ in the pipeline: folding scales leaves a block's function unchanged, and a
// run replayed from saved scales (--load-scales) writes byte-identical weights.
#include "pipeline/quantize/awq.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/quantize/quantize_run.hpp"
#include "pipeline/quantize/smoothing.hpp"
#include "test_paths.hpp"
#include "tiny_as.hpp"

namespace ptq {
namespace {

constexpr float kFoldTolerance = 2e-4f;  // relative to the output's max |value|: float rounding only

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

VectorF random_scales(Eigen::Index n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  VectorF s(n);
  for (auto& v : s) v = std::exp(u(gen));  // spread over e^-2 .. e^2
  return s;
}

TEST(AwqFold, ScalesLeaveBlockOutputUnchanged) {
  const Model model = Model::open(tiny());
  const ModelConfig& c = model.config();
  BlockWeights w = model.load_block(1);
  std::vector<std::int32_t> ids(2 * 64);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>((i * 37 + 5) % c.vocab_size);
  Activations before{model.embed(ids), 64};
  Activations after = before;
  block_forward(c, w, before);

  BlockScales awq{1, {}, {}};
  for (FoldSite prev : {FoldSite::input_norm, FoldSite::post_attention_norm, FoldSite::up}) {
    const int in = linear_in_features(c, scaled_roles(prev).front());
    awq.scales.push_back({prev, random_scales(in, 30 + static_cast<unsigned>(prev)), 0.5f, 0.0});
  }
  const MatrixRM q_before = w.weight(LinearRole::q);
  apply_block_scales(w, awq, QuantSpec{});
  ASSERT_FALSE(w.weight(LinearRole::q).isApprox(q_before));  // the fold did change the weights
  block_forward(c, w, after);
  const float scale = before.x.cwiseAbs().maxCoeff();
  EXPECT_LT((after.x - before.x).cwiseAbs().maxCoeff(), kFoldTolerance * scale);
}

// A mixture layer (tiny as Mixtral, 8 experts; as Qwen3-MoE, 4 stacked):
// post_attention_norm's scales go to every expert's gate and up and to the
// float router, so the routing and the layer's output are unchanged; each
// expert's up -> down scales too.
TEST(AwqFold, ExpertScalesLeaveTheMixtureLayerUnchanged) {
  for (const std::string family : {"mixtral", "qwen3moe"}) {
    SCOPED_TRACE(family);
    const Model model = Model::open(test::tiny_as(family));
    const ModelConfig& c = model.config();
    BlockWeights w = model.load_block(1);
    ASSERT_FALSE(w.experts.empty());
    std::vector<std::int32_t> ids(2 * 64);
    for (std::size_t i = 0; i < ids.size(); ++i)
      ids[i] = static_cast<std::int32_t>((i * 37 + 5) % c.vocab_size);
    Activations before{model.embed(ids), 64};
    Activations after = before;
    block_forward(c, w, before);

    BlockScales awq{1, {}, {}};
    awq.scales.push_back(
        {FoldSite::post_attention_norm, random_scales(c.hidden_size, 31), 0.5f, 0.0});
    for (int e = 0; e < c.moe.experts; ++e)
      awq.scales.push_back(
          {FoldSite::up, random_scales(c.moe.intermediate_size, 40 + e), 0.5f, 0.0, e});
    const MatrixRM router_before = w.router, down_before = w.experts.back().down;
    apply_block_scales(w, awq, QuantSpec{});
    ASSERT_FALSE(w.router.isApprox(router_before));
    ASSERT_FALSE(w.experts.back().down.isApprox(down_before));
    block_forward(c, w, after);
    const float scale = before.x.cwiseAbs().maxCoeff();
    EXPECT_LT((after.x - before.x).cwiseAbs().maxCoeff(), kFoldTolerance * scale);
  }
}

// AWQ on a mixture (W4 g128 asymmetric, 8 windows of 128 tokens): its searched
// scales and clips, experts' included, give a lower perplexity than RTN on the
// same grid; the record holds each expert's scales, the output the folded
// router, and a run replayed from the record writes the same bytes.
TEST(AwqMixture, BeatsRtnOnTheSameGridAndReplays) {
  const std::vector<std::int32_t> eval_ids =
      read_ids(test::fixture("goldens/tiny/eval_generic.ids"));
  EvalConfig eval;
  eval.ctx = 128;
  eval.max_windows = 16;
  for (const std::string family : {"mixtral", "qwen3moe"}) {
    SCOPED_TRACE(family);
    const auto dir = test::temp_dir("awq-mixture-" + family);
    QuantizeJob job;
    job.model = test::tiny_as(family);
    job.recipe.method = Method::Awq;
    job.recipe.spec.granularity = Granularity::Group;
    job.recipe.calibration.samples = 8;
    job.recipe.calibration.seqlen = 128;
    job.recipe.sources = {{"generic", test::fixture("goldens/tiny/calib_generic.ids"), 1.0}};
    job.out = dir / "awq";
    job.recipe.format = OutputFormat::dequantized;
    run_quantize(job, {});
    QuantizeJob rtn = job;
    rtn.recipe.method = Method::Rtn;
    rtn.out = dir / "rtn";
    run_quantize(rtn, {});
    const double ppl_awq = evaluate(open_model(job.out), eval_ids, eval).ppl;
    const double ppl_rtn = evaluate(open_model(rtn.out), eval_ids, eval).ppl;
    std::printf("%s: ppl AWQ %.4f, RTN %.4f\n", family.c_str(), ppl_awq, ppl_rtn);
    EXPECT_LT(ppl_awq, ppl_rtn);

    const H5Reader record(job.out / "quantized.h5");
    EXPECT_TRUE(record.has("awq/layers/1/scales/experts/0/up"));
    EXPECT_TRUE(record.has("awq/layers/1/clip/experts/0/down"));
    const Model source = Model::open(job.model), quantized = Model::open(job.out);
    EXPECT_FALSE(source.load_block(1).router.isApprox(quantized.load_block(1).router));

    QuantizeJob replayed = job;
    replayed.recipe.sources.clear();
    replayed.load_scales = job.out / "quantized.h5";
    replayed.out = dir / "replayed";
    run_quantize(replayed, {});
    EXPECT_TRUE(test::read_bytes(job.out / "model.safetensors") ==
                test::read_bytes(replayed.out / "model.safetensors"));
  }
}

// A small AWQ job: 4 windows of 128 tokens, W3 g128.
QuantizeJob small_awq_job(const std::filesystem::path& out) {
  QuantizeJob job;
  job.model = tiny();
  job.out = out;
  job.recipe.method = Method::Awq;
  job.recipe.spec.bits = 3;
  job.recipe.spec.granularity = Granularity::Group;
  job.recipe.calibration.samples = 4;
  job.recipe.calibration.seqlen = 128;
  job.recipe.sources = {{"generic", test::fixture("goldens/tiny/calib_generic.ids"), 1.0}};
  job.threads = 2;
  return job;
}

// One searched run shared by the replay tests (each run takes seconds).
const std::filesystem::path& searched_output() {
  static const std::filesystem::path out = [] {
    const auto dir = test::temp_dir("awq-searched") / "model";
    run_quantize(small_awq_job(dir), {});
    return dir;
  }();
  return out;
}

TEST(AwqReplay, LoadedScalesGiveIdenticalWeights) {
  const auto dir = test::temp_dir("awq-replay");
  QuantizeJob replayed = small_awq_job(dir / "replayed");
  replayed.recipe.sources.clear();  // replayed RTN needs no calibration data
  replayed.load_scales = searched_output() / "quantized.h5";
  run_quantize(replayed, {});
  const std::string a = test::read_bytes(searched_output() / "model.safetensors");
  ASSERT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == test::read_bytes(dir / "replayed" / "model.safetensors"));
  // The norms the scales folded into are written (float32), so they differ from the source.
  const Model source = Model::open(tiny()), quantized = Model::open(searched_output());
  EXPECT_FALSE(source.load_block(0).input_norm.isApprox(quantized.load_block(0).input_norm));
}

TEST(AwqReplay, MismatchedGroupSizeIsAnInputError) {
  const auto dir = test::temp_dir("awq-replay-bad");
  QuantizeJob other = small_awq_job(dir / "other");
  other.recipe.spec.group_size = 64;
  other.load_scales = searched_output() / "quantized.h5";
  try {
    run_quantize(other, {});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("clip"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "other"));
}

TEST(AwqReplay, RecipeWithoutAwqIsAnInputError) {
  QuantizeJob rtn = small_awq_job(test::temp_dir("awq-replay-rtn") / "rtn");
  rtn.recipe.method = Method::Rtn;
  rtn.load_scales = searched_output() / "quantized.h5";
  EXPECT_THROW(run_quantize(rtn, {}), InputError);
}

TEST(AwqRecipe, ExamplesLoad) {
  const auto dir = test::source_dir() / "recipes";
  const Recipe awq = load_recipe(dir / "awq-w4-g128.yaml");
  EXPECT_EQ(awq.method, Method::Awq);
  EXPECT_EQ(awq.quant_spec().range, RangeRule::MinMax);
  EXPECT_EQ(awq.awq_clip, AwqClipMode::Search);
  const Recipe mixed = load_recipe(dir / "gptq-awq-w4-g128.yaml");
  EXPECT_EQ(mixed.method, Method::Gptq);
  EXPECT_EQ(mixed.scaling, Scaling::Awq);
  EXPECT_EQ(mixed.quant_spec().range, RangeRule::IncludeZero);  // GPTQ keeps its grid
  EXPECT_EQ(awq_options(mixed, 1).spec.range, RangeRule::MinMax);  // the searches use llm-awq's
}

TEST(AwqRecipe, SymmetricAwqIsAnInputError) {
  Recipe r;
  r.method = Method::Awq;
  r.spec.symmetry = Symmetry::Symmetric;
  EXPECT_THROW(r.validate(), InputError);
}

}  // namespace
}  // namespace ptq
