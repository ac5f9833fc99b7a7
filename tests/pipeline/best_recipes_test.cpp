// The shipped *-best recipes never lose to plain GPTQ at the same storage
// (issue 19's guard; docs/tuning.md chooses them on validation text, and
// docs/bench/tuning.md measures them on three models). Here on tiny, with
// text neither side calibrates on nor is reported on: calibration windows
// 0..15 of calib_generic.ids calibrate, windows 64..79 are evaluated.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int kSeq = 512, kCalibWindows = 16, kFirstHeldOut = 64, kHeldOut = 16;

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

// Windows 64..79 of the calibration file, which the runs below never calibrate on.
std::filesystem::path held_out_ids(const std::filesystem::path& dir) {
  const auto all = read_ids(test::fixture("goldens/tiny/calib_generic.ids"));
  const auto first = all.begin() + kFirstHeldOut * kSeq;
  const std::vector<std::int32_t> held(first, first + kHeldOut * kSeq);
  write_ids(dir / "held_out.ids", held);
  return dir / "held_out.ids";
}

// Perplexity on the held-out windows after quantizing tiny with `recipe_args`.
double held_out_ppl(const std::filesystem::path& dir, const std::string& name,
                    const std::string& recipe_args, const std::filesystem::path& ids) {
  const auto out = dir / name;
  const std::string quantize = "quantize --model " + tiny().string() + " " + recipe_args +
                               " --calib-ids " +
                               test::fixture("goldens/tiny/calib_generic.ids").string() +
                               " --samples " + std::to_string(kCalibWindows) +
                               " --format dequantized --out " + out.string();
  EXPECT_EQ(test::run_ptq(quantize, dir / (name + ".quantize.log")), 0) << quantize;
  const std::string eval = "eval --model " + out.string() + " --ids " + ids.string() +
                           " --json " + (dir / (name + ".json")).string();
  EXPECT_EQ(test::run_ptq(eval, dir / (name + ".eval.log")), 0) << eval;
  std::ifstream in(dir / (name + ".json"));
  return nlohmann::json::parse(in)["ppl"].get<double>();
}

struct Best {
  std::string recipe;  // recipes/<recipe>.yaml
  std::string plain;   // plain GPTQ's flags at the same storage
};

class BestRecipes : public ::testing::TestWithParam<Best> {};

TEST_P(BestRecipes, NeverWorseThanPlainGptqAtTheSameStorage) {
  const auto dir = test::temp_dir("best-" + GetParam().recipe);
  const auto ids = held_out_ids(dir);
  const double plain = held_out_ppl(dir, "plain", "--method gptq " + GetParam().plain, ids);
  const double best = held_out_ppl(
      dir, "best",
      "--recipe " + (test::source_dir() / "recipes" / (GetParam().recipe + ".yaml")).string(), ids);
  RecordProperty("plain_ppl", std::to_string(plain));
  RecordProperty("best_ppl", std::to_string(best));
  EXPECT_LT(best, plain) << GetParam().recipe;
}

INSTANTIATE_TEST_SUITE_P(Shipped, BestRecipes,
                         ::testing::Values(Best{"w4-g128-best", "--bits 4 --group 128"},
                                           Best{"w3-g128-best", "--bits 3 --group 128"},
                                           Best{"w4-pc-best", "--bits 4 --group channel"}),
                         [](const auto& info) {
                           std::string name = info.param.recipe;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace ptq
