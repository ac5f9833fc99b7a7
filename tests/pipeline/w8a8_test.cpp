// W8A8 and NF4 end to end on tiny with few windows: `ptq quantize`'s output
// records its activation scheme, evaluates close to the float model with
// simulated int8 activations, and stores what it searched and quantized.
#include <gtest/gtest.h>

#include <fstream>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "io/safetensors.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/quantize/quantize_run.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int kWindows = 4;          // eval windows: a quick check, not the bench
constexpr double kW8a8MaxKl = 0.01;  // the reference's full-set KL is 0.0014

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

std::filesystem::path quantize(const std::string& name, Recipe recipe) {
  recipe.calibration.samples = 8;
  recipe.sources = {{"generic", test::fixture("goldens/tiny/calib_generic.ids"), 1.0}};
  const auto out = test::temp_dir(name) / "model";
  QuantizeJob job;
  job.model = tiny();
  job.out = out;
  job.recipe = std::move(recipe);
  job.threads = 2;
  job.batch_windows = 4;
  run_quantize(job, {});
  return out;
}

EvalResult eval(const std::filesystem::path& model_dir, const LinearInputTransform* transform) {
  const Model model = Model::open(model_dir);
  const Model reference = Model::open(tiny());
  EvalConfig config;
  config.max_windows = kWindows;
  config.input_transform = transform;
  return evaluate(model, read_ids(test::fixture("goldens/tiny/eval_generic.ids")), config, &reference);
}

TEST(W8A8, SmoothQuantOutputEvaluatesCloseToFloat) {
  Recipe recipe;
  recipe.method = Method::W8A8;
  recipe.smoothquant = SmoothQuantConfig{0.5};
  const auto out = quantize("w8a8-sq", recipe);

  const auto scheme = load_activation_quant(out, 4);
  ASSERT_TRUE(scheme.has_value());
  EXPECT_EQ(scheme->granularity, ActGranularity::Token);
  const Int8Activations activations(*scheme);
  const EvalResult simulated = eval(out, &activations);
  const EvalResult weights_only = eval(out, nullptr);
  EXPECT_LT(*simulated.kl, kW8a8MaxKl);
  EXPECT_GT(*simulated.kl, *weights_only.kl);  // the int8 activations are really simulated

  // The smoothed norms replace the source's (as float32); the scales are saved.
  const Checkpoint source = Checkpoint::open(tiny()), quantized = Checkpoint::open(out);
  const std::string norm = block_tensor_name(0, "input_layernorm.weight");
  EXPECT_EQ(quantized.find(norm)->dtype, DType::F32);
  EXPECT_NE(quantized.find(norm)->to_float(), source.find(norm)->to_float());
  EXPECT_EQ(H5Reader(out / "quantized.h5").shape("awq/layers/3/scales/post_attention_norm"),
            std::vector<std::int64_t>{256});
}

TEST(W8A8, StaticPerTensorScalesAreStoredAndUsed) {
  Recipe recipe;
  recipe.method = Method::W8A8;
  recipe.act_granularity = ActGranularity::Tensor;
  recipe.act_percentile = 99.9;
  const auto out = quantize("w8a8-static", recipe);
  const auto scheme = load_activation_quant(out, 4);
  ASSERT_TRUE(scheme.has_value());
  ASSERT_EQ(scheme->static_scales.size(), 4u);
  const Int8Activations activations(*scheme);
  const EvalResult r = eval(out, &activations);
  EXPECT_LT(*r.kl, 0.05);  // a static, clipped grid is coarser than per-token scales
}

TEST(Nf4Output, CodesInQuantizedH5MatchTheFloat16Weights) {
  Recipe recipe;
  recipe.method = Method::Nf4;
  const auto out = quantize("nf4", recipe);
  const H5Reader h5(out / "quantized.h5");
  const QuantizedLinear q = read_quantized_linear(h5, {2, LinearRole::down});
  ASSERT_TRUE(std::holds_alternative<Nf4Matrix>(q.weight));
  const MatrixRM stored = Model::open(out).load_block(2).weight(LinearRole::down);
  const MatrixRM deq = q.dequantize();
  EXPECT_LT((stored - deq).cwiseAbs().maxCoeff(), 1e-3f * deq.cwiseAbs().maxCoeff());  // float16 rounding
  EXPECT_FALSE(stored.isApprox(Model::open(tiny()).load_block(2).weight(LinearRole::down), 1e-3f));
}

}  // namespace
}  // namespace ptq

namespace ptq {
namespace {

std::filesystem::path recipe_file(const std::string& name) {
  return test::source_dir() / "recipes" / (name + ".yaml");
}

TEST(W8A8Recipes, Load) {
  const Recipe sq = load_recipe(recipe_file("w8a8-smoothquant-a0.8"));
  EXPECT_EQ(sq.method, Method::W8A8);
  ASSERT_TRUE(sq.smoothquant.has_value());
  EXPECT_EQ(sq.smoothquant->alpha, 0.8);
  EXPECT_TRUE(sq.needs_calibration());
  EXPECT_FALSE(load_recipe(recipe_file("w8a8-naive")).needs_calibration());
  EXPECT_EQ(load_recipe(recipe_file("nf4")).nf4.block_size, 64);
}

TEST(W8A8Recipes, BadValuesNameTheKey) {
  const auto dir = test::temp_dir("bad-recipes");
  const std::pair<const char*, const char*> cases[] = {
      {"method: w8a8\nsmoothquant: {alpha: 2}\n", "smoothquant.alpha"},
      {"method: w8a8\nactivations: {granularity: channel}\n", "activations.granularity"},
      {"method: w8a8\nactivations: {percentile: 0}\n", "activations.percentile"},
      {"method: nf4\nblock: 0\n", "block"},
      {"method: int4\n", "method"},
  };
  for (const auto& [text, key] : cases) {
    std::ofstream(dir / "r.yaml") << text;
    try {
      load_recipe(dir / "r.yaml");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace ptq
