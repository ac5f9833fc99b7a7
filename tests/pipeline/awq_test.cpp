// AWQ in the pipeline: folding scales leaves a block's function unchanged, and a
// run replayed from saved scales (--load-scales) writes byte-identical weights.
#include <gtest/gtest.h>

#include <random>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/quantize/awq.hpp"
#include "pipeline/quantize/smoothing.hpp"
#include "pipeline/quantize/quantize_run.hpp"
#include "test_paths.hpp"

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
