// Recipe keys for clipping and scale refit; every shipped recipe survives a
// YAML round trip.
#include <gtest/gtest.h>

#include <fstream>

#include "io/error.hpp"
#include "pipeline/recipe/recipe.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

std::filesystem::path write_recipe(const std::string& name, const std::string& text) {
  const auto path = test::temp_dir("recipe-clip") / name;
  std::ofstream(path) << text;
  return path;
}

// The recipe in `file` is refused with an error that names `key`.
void refused(const std::filesystem::path& file, const std::string& key) {
  try {
    check_given_keys_apply(load_recipe(file));
    ADD_FAILURE() << file << " accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(RecipeClip, ReadsClipAndRefit) {
  const Recipe r = load_recipe(write_recipe("a.yaml",
      "method: gptq\nbits: 3\ngroup: 128\n"
      "clip: {method: mse, steps: 50, max_shrink: 0.5, norm: 2, weighting: hessian}\n"
      "refit: least_squares\n"));
  EXPECT_EQ(r.clip.method, ClipMethod::Mse);
  EXPECT_EQ(r.clip.steps, 50);
  EXPECT_EQ(r.clip.max_shrink, 0.5);
  EXPECT_EQ(r.clip.norm, 2.0);
  EXPECT_EQ(r.clip.weighting, ClipWeighting::Hessian);
  EXPECT_EQ(r.refit, ScaleRefit::LeastSquares);
  EXPECT_EQ(r.gptq_config().clip.method, ClipMethod::Mse);
  EXPECT_TRUE(r.needs_calibration());
}

TEST(RecipeClip, DefaultsLeaveTheGridAlone) {
  const Recipe r = load_recipe(write_recipe("b.yaml", "method: rtn\nbits: 4\ngroup: 128\n"));
  EXPECT_EQ(r.clip.method, ClipMethod::None);
  EXPECT_EQ(r.refit, ScaleRefit::None);
  EXPECT_FALSE(r.needs_calibration());
  EXPECT_EQ(recipe_to_yaml(r).find("clip"), std::string::npos);
}

TEST(RecipeClip, BadValuesNameTheKey) {
  try {
    load_recipe(write_recipe("c.yaml", "method: gptq\nclip: {method: minmax}\n"));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("clip.method"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_recipe(write_recipe("d.yaml", "method: gptq\nclip: {method: mse, max_shrink: 1.2}\n")),
               InputError);
  EXPECT_THROW(load_recipe(write_recipe("e.yaml", "method: gptq\nrefit: yes\n")), InputError);
}

// recipe_to_yaml is what outputs record and resumes compare, so it must read
// back to the same recipe for every key a shipped recipe uses.
TEST(Recipes, EveryShippedRecipeRoundTripsThroughYaml) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::source_dir() / "recipes")) {
    const std::string name = entry.path().filename().string();
    const std::string yaml = recipe_to_yaml(load_recipe(entry.path()));
    EXPECT_EQ(recipe_to_yaml(load_recipe(write_recipe(name, yaml))), yaml) << name;
    ++count;
  }
  EXPECT_GE(count, 14);  // the recipes/ folder as of this test
}

// GPTAQ's target: a GPTQ key, its damping only with it, read back as written.
TEST(Recipes, FloatOutputTargetKeys) {
  const Recipe r = load_recipe(
      write_recipe("t.yaml", "method: gptq\ntarget: float_outputs\ntarget_damp: 0.5\n"));
  EXPECT_EQ(r.target, RoundingTarget::FloatOutputs);
  EXPECT_EQ(r.target_damp, 0.5);
  EXPECT_NO_THROW(check_given_keys_apply(r));
  const Recipe back = recipe_from_yaml(recipe_to_yaml(r), "written");
  EXPECT_EQ(back.target, r.target);
  EXPECT_EQ(back.target_damp, r.target_damp);
  EXPECT_EQ(recipe_to_yaml(load_recipe(write_recipe("p.yaml", "method: gptq\n"))).find("target"),
            std::string::npos);
  refused(write_recipe("rtn.yaml", "method: rtn\ntarget: float_outputs\n"), "target");
  refused(write_recipe("damp.yaml", "method: gptq\ntarget_damp: 0.5\n"), "target_damp");
  refused(write_recipe("zero.yaml", "method: gptq\ntarget: float_outputs\ntarget_damp: 0\n"),
          "target_damp");
}

// The code sweeps: a GPTQ key, read back as written, refused elsewhere and below 0.
TEST(Recipes, CodeSweepsKey) {
  const Recipe r = load_recipe(write_recipe("s.yaml", "method: gptq\ncode_sweeps: 4\n"));
  EXPECT_EQ(r.code_sweeps, 4);
  EXPECT_NO_THROW(check_given_keys_apply(r));
  EXPECT_EQ(recipe_from_yaml(recipe_to_yaml(r), "written").code_sweeps, 4);
  for (const char* yaml : {"method: rtn\ncode_sweeps: 2\n", "method: gptq\ncode_sweeps: -1\n",
                           "method: gptq\nformat: gguf\ngguf_type: Q4_0\ncode_sweeps: 2\n"})
    refused(write_recipe("bad.yaml", yaml), "sweeps");
}

// Source names and paths are the user's: a quote, a backslash, a control
// character or a YAML indicator must read back as it was (the fuzzer found
// names written unquoted and paths with an unescaped '"').
TEST(Recipes, SourceNamesAndPathsRoundTripWhateverTheyHold) {
  Recipe r;
  r.sources = {{"!tag", "/data/a \"b\"\\c.txt", 0.7}, {"x: {y}\t#", "- [z].jsonl", 0.3}};
  const Recipe back = recipe_from_yaml(recipe_to_yaml(r), "written");
  ASSERT_EQ(back.sources.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.sources[i].name, r.sources[i].name);
    EXPECT_EQ(back.sources[i].path, r.sources[i].path);
    EXPECT_EQ(back.sources[i].weight, r.sources[i].weight);
  }
}

}  // namespace
}  // namespace ptq

namespace ptq {
namespace {

// A mix's keys (Recipe::mix) read from YAML and written back the same way.
TEST(RecipeMix, ReadsAndWritesTheMixKeys) {
  const Recipe r = load_recipe(write_recipe("mix.yaml",
      "method: gptq\nformat: compressed-tensors\n"
      "mix: {bpw: 4.6, candidates: \"w4-g128, w8-pc\", predictor: kl, windows: 4}\n"));
  EXPECT_EQ(r.mix.bpw, 4.6);
  EXPECT_EQ(r.mix.candidates, (std::vector<std::string>{"w4-g128", "w8-pc"}));
  EXPECT_EQ(r.mix.predictor, MixPredictor::kl);
  EXPECT_EQ(r.mix.windows, 4);
  EXPECT_TRUE(r.chooses_mix());
  EXPECT_TRUE(r.needs_calibration());
  const Recipe back = recipe_from_yaml(recipe_to_yaml(r), "written");
  EXPECT_EQ(back.mix.bpw, r.mix.bpw);
  EXPECT_EQ(back.mix.candidates, r.mix.candidates);
  EXPECT_EQ(back.mix.predictor, r.mix.predictor);
  EXPECT_EQ(back.mix.windows, r.mix.windows);
  QuantSpec w8 = r.spec;
  w8.bits = 8;
  w8.granularity = Granularity::Channel;
  EXPECT_EQ(*mix_scheme("w8-pc", r.spec), w8);
  EXPECT_FALSE(mix_scheme("w3-g128", r.spec).has_value());
  EXPECT_FALSE(mix_scheme("w4-g128x", r.spec).has_value());
}

}  // namespace
}  // namespace ptq
