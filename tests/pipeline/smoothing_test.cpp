// SmoothQuant scaling in front of GPTQ and W8A8: the scales saved in quantized.h5
// are SmoothQuant's of the float model's block-0 inputs, and a run replayed from
// them (--load-scales) writes byte-identical weights.
#include <gtest/gtest.h>


#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/quantize/quantize_run.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr double kAlpha = 0.5;

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

// GPTQ W4 g128 after SmoothQuant scaling, 4 windows of 128 tokens.
QuantizeJob smoothed_gptq_job(const std::filesystem::path& out) {
  QuantizeJob job;
  job.model = tiny();
  job.out = out;
  job.recipe.method = Method::Gptq;
  job.recipe.scaling = Scaling::SmoothQuant;
  job.recipe.smoothquant = SmoothQuantConfig{kAlpha};
  job.recipe.calibration.samples = 4;
  job.recipe.calibration.seqlen = 128;
  job.recipe.sources = {{"generic", test::fixture("goldens/tiny/calib_generic.ids"), 1.0}};
  job.threads = 2;
  return job;
}

// Max |x| per channel of block 0's two normed inputs in the float model.
struct Block0Absmax : LinearObserver {
  Eigen::VectorXf attention_in, mlp_in;
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    const LinearInput input = linear_spec(roles.front()).input;
    if (input != LinearInput::attention_in && input != LinearInput::mlp_in) return;
    Eigen::VectorXf& m = input == LinearInput::attention_in ? attention_in : mlp_in;
    const Eigen::VectorXf here = x.cwiseAbs().colwise().maxCoeff().transpose();
    m = m.size() == 0 ? here : m.cwiseMax(here);
  }
};

TEST(SmoothQuantScaling, GptqSavesTheFloatModelsScalesAndReplaysThem) {
  const auto dir = test::temp_dir("sq-gptq");
  const QuantizeJob job = smoothed_gptq_job(dir / "searched");
  run_quantize(job, {});

  // Block 0 sees the embeddings in every flow, so its scales can be recomputed
  // from one plain float forward of the calibration windows.
  const Model model = Model::open(tiny());
  const CalibrationSet calib = load_calibration(tiny(), job.recipe.sources, job.recipe.calibration);
  BlockWeights w = model.load_block(0);
  Block0Absmax absmax;
  Activations act{embed_windows(model, calib), job.recipe.calibration.seqlen};
  block_forward(model.config(), w, act, observing(&absmax));
  const std::vector<const MatrixRM*> qkv = {&w.weight(LinearRole::q), &w.weight(LinearRole::k),
                                            &w.weight(LinearRole::v)};
  const std::vector<const MatrixRM*> gate_up = {&w.weight(LinearRole::gate), &w.weight(LinearRole::up)};
  const SmoothQuantConfig config{kAlpha};
  const H5Reader saved(dir / "searched" / "quantized.h5");
  const auto attention = saved.read<float>("awq/layers/0/scales/input_norm");
  const auto mlp = saved.read<float>("awq/layers/0/scales/post_attention_norm");
  EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(attention.data(), static_cast<Eigen::Index>(attention.size()))
                  .isApprox(smoothing_scales(absmax.attention_in, qkv, config), 1e-6f));
  EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(mlp.data(), static_cast<Eigen::Index>(mlp.size()))
                  .isApprox(smoothing_scales(absmax.mlp_in, gate_up, config), 1e-6f));
  EXPECT_FALSE(saved.has("awq/layers/0/clip/q"));  // SmoothQuant clips nothing

  QuantizeJob replayed = smoothed_gptq_job(dir / "replayed");
  replayed.load_scales = dir / "searched" / "quantized.h5";
  run_quantize(replayed, {});
  for (const char* f : {"model.safetensors", "quantized.h5"})
    EXPECT_TRUE(test::read_bytes(dir / "searched" / f) == test::read_bytes(dir / "replayed" / f)) << f;
}

TEST(SmoothQuantScaling, W8A8ReplaysItsScalesWithoutCalibration) {
  const auto dir = test::temp_dir("sq-w8a8");
  QuantizeJob job = smoothed_gptq_job(dir / "searched");
  job.recipe.method = Method::W8A8;
  job.recipe.scaling = Scaling::None;
  run_quantize(job, {});
  QuantizeJob replayed = job;
  replayed.out = dir / "replayed";
  replayed.recipe.sources.clear();  // per-token activations: the scales are all it needs
  replayed.load_scales = dir / "searched" / "quantized.h5";
  run_quantize(replayed, {});
  EXPECT_TRUE(test::read_bytes(dir / "searched" / "model.safetensors") == test::read_bytes(dir / "replayed" / "model.safetensors"));
}

TEST(SmoothQuantScaling, ExampleRecipeLoads) {
  const Recipe r = load_recipe(test::source_dir() / "recipes" / "gptq-smoothquant-w4-g128.yaml");
  EXPECT_EQ(r.method, Method::Gptq);
  EXPECT_EQ(r.scaling, Scaling::SmoothQuant);
  ASSERT_TRUE(r.smoothquant.has_value());
  EXPECT_EQ(r.smoothquant->alpha, 0.5);
  EXPECT_TRUE(r.folds_scales());
}

TEST(SmoothQuantScaling, RecipesRefuseScalingWhereItDoesNotApply) {
  Recipe awq;
  awq.method = Method::Awq;
  awq.scaling = Scaling::SmoothQuant;
  awq.smoothquant = SmoothQuantConfig{};
  EXPECT_THROW(awq.validate(), InputError);
  Recipe no_alpha;
  no_alpha.scaling = Scaling::SmoothQuant;
  EXPECT_THROW(no_alpha.validate(), InputError);
  Recipe stray;  // gptq with a smoothquant key but no smoothquant scaling
  stray.smoothquant = SmoothQuantConfig{};
  EXPECT_THROW(stray.validate(), InputError);
  EXPECT_THROW(parse_scaling("smooth", "--scaling"), InputError);
}

}  // namespace
}  // namespace ptq
