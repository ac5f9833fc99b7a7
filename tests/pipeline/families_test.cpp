// Families beyond Llama's own layout through the command line: Phi-3 (fused
// qkv_proj and gate_up_proj, LongRoPE) is evaluated as transformers computes it and,
// until its fused Linears can be written, refused by quantize before any output.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int kTokens = 96, kVocab = 512;  // tests/data/models/README.md

std::filesystem::path phi3_longrope() { return test::source_dir() / "tests/data/models/phi3-longrope"; }

// Next-token NLL of ref_ids.ids under transformers' float32 logits (ref_logits.f32).
double transformers_nll(const std::filesystem::path& dir) {
  const std::vector<float> logits = test::read_f32(dir / "ref_logits.f32");
  std::vector<std::int32_t> ids(kTokens);
  std::ifstream(dir / "ref_ids.ids", std::ios::binary)
      .read(reinterpret_cast<char*>(ids.data()), kTokens * 4);
  double nll = 0;
  for (int t = 0; t + 1 < kTokens; ++t) {
    const float* row = logits.data() + static_cast<std::size_t>(t) * kVocab;
    double max = row[0], sum = 0;
    for (int v = 0; v < kVocab; ++v) max = std::max(max, double(row[v]));
    for (int v = 0; v < kVocab; ++v) sum += std::exp(double(row[v]) - max);
    nll += max + std::log(sum) - row[ids[t + 1]];
  }
  return nll;
}

TEST(Families, Phi3LongRopeEvaluatesAsTransformersDoes) {
  const auto dir = test::temp_dir("family-phi3-eval");
  const auto json = dir / "eval.json";
  const std::string args = "eval --model " + phi3_longrope().string() + " --ids " +
                           (phi3_longrope() / "ref_ids.ids").string() + " --ctx " +
                           std::to_string(kTokens) + " --json " + json.string();
  ASSERT_EQ(test::run_ptq(args, dir / "eval.log"), 0) << args;
  std::ifstream in(json);
  const double ours = nlohmann::json::parse(in)["nll_sum"].get<double>();
  EXPECT_NEAR(ours, transformers_nll(phi3_longrope()), 1e-3);
}

TEST(Families, Phi3QuantizeIsRefusedBeforeAnyOutput) {
  const auto dir = test::temp_dir("family-phi3-quantize");
  const auto out = dir / "q";
  const std::string args = "quantize --model " + phi3_longrope().string() +
                           " --method rtn --bits 4 --group 16 --out " + out.string();
  EXPECT_EQ(test::run_ptq(args, dir / "quantize.log"), 2) << args;
  std::stringstream log;
  log << std::ifstream(dir / "quantize.log").rdbuf();
  EXPECT_NE(log.str().find("phi3"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("fused"), std::string::npos) << log.str();
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace ptq
