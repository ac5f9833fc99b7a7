// ptq eval: protocol, KL/top-1, against independent straightforward
// computations and the fixtures' reference numbers.
#include "pipeline/eval/eval.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/ids_file.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int fast_windows = 6;         // windows used by the fast tests
constexpr double sum_tolerance = 1e-6;  // relative: batched vs per-window sums

std::vector<std::int32_t> tiny_eval_ids() {
  return read_ids(test::fixture("goldens/tiny/eval_generic.ids"));
}

// Straightforward per-window statistics: logits() on one window at a time
// (no batching, blocks streamed) and log-softmax in double in plain loops.
struct Straightforward {
  double nll = 0.0, kl = 0.0;
  long positions = 0, agree = 0;
};

std::vector<double> log_softmax(const MatrixRM& logits, Eigen::Index row) {
  double peak = -INFINITY, sum = 0.0;
  for (Eigen::Index v = 0; v < logits.cols(); ++v) peak = std::max(peak, double(logits(row, v)));
  for (Eigen::Index v = 0; v < logits.cols(); ++v) sum += std::exp(logits(row, v) - peak);
  std::vector<double> out(static_cast<std::size_t>(logits.cols()));
  for (Eigen::Index v = 0; v < logits.cols(); ++v) out[v] = logits(row, v) - peak - std::log(sum);
  return out;
}

Straightforward straightforward(const Model& model, const Model& reference,
                                const std::vector<std::int32_t>& ids, int ctx, int windows) {
  Straightforward s;
  for (int w = 0; w < windows; ++w) {
    const std::span<const std::int32_t> window(ids.data() + w * ctx, ctx);
    const MatrixRM q = logits(model, window, ctx), p = logits(reference, window, ctx);
    for (int t = 0; t + 1 < ctx; ++t) {
      const auto lq = log_softmax(q, t), lp = log_softmax(p, t);
      s.nll -= lq[window[t + 1]];
      for (std::size_t v = 0; v < lq.size(); ++v) s.kl += std::exp(lp[v]) * (lp[v] - lq[v]);
      Eigen::Index aq, ap;
      q.row(t).maxCoeff(&aq);
      p.row(t).maxCoeff(&ap);
      s.agree += aq == ap;
      ++s.positions;
    }
  }
  return s;
}

// A copy of tiny with every weight rounded to `mantissa_bits` bits, stored as F32.
std::filesystem::path perturbed_tiny(const std::filesystem::path& dir, int mantissa_bits) {
  const Checkpoint source = Checkpoint::open(test::fixture("models/tiny"));
  std::vector<std::vector<float>> data;
  std::vector<TensorToWrite> out;
  for (const TensorView* t : source.tensors()) {
    std::vector<float> v = t->to_float();
    for (float& x : v) {
      int e = 0;
      const float m = std::frexp(x, &e);
      x = std::ldexp(std::round(std::ldexp(m, mantissa_bits)), e - mantissa_bits);
    }
    data.push_back(std::move(v));
  }
  std::size_t i = 0;
  for (const TensorView* t : source.tensors()) {
    const auto& v = data[i++];
    out.push_back(
        {t->name, DType::F32, t->shape, std::as_bytes(std::span<const float>(v.data(), v.size()))});
  }
  write_safetensors(dir / "model.safetensors", out);
  std::filesystem::copy_file(test::fixture("models/tiny/config.json"), dir / "config.json");
  return dir;
}

EvalConfig fast_config() {
  EvalConfig c;
  c.max_windows = fast_windows;
  c.batch_windows = 4;  // 6 windows: one full batch and one partial one
  return c;
}

// The protocol at the scale of the golden logits: logits_prompt.ids are the
// first 64 eval tokens, so one window of ctx 64 must give the NLL of tokens
// 1..63 under the golden (HF float32) logits. The full-set comparison with
// reference.json: tiny's generic set below, the rest in bench/eval_reference.sh
// (docs/bench/eval_reference.md).
class GoldenWindow : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenWindow, NllOfFirstWindowMatchesGoldenLogits) {
  const std::string m = GetParam();
  const auto ids = read_ids(test::fixture("goldens/" + m + "/logits_prompt.ids"));
  const auto golden = test::read_f32(test::fixture("goldens/" + m + "/logits_prompt.f32"));
  const auto eval_ids = read_ids(test::fixture("goldens/" + m + "/eval_generic.ids"));
  ASSERT_TRUE(std::equal(ids.begin(), ids.end(), eval_ids.begin()));
  const std::size_t vocab = golden.size() / ids.size();
  double golden_nll = 0.0;
  for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
    const MatrixRM row = Eigen::Map<const MatrixRM>(golden.data() + t * vocab, 1, vocab);
    golden_nll -= log_softmax(row, 0)[ids[t + 1]];
  }
  EvalConfig c;
  c.ctx = static_cast<int>(ids.size());
  c.max_windows = 1;
  const EvalResult r = evaluate(Model::open(test::fixture("models/" + m)), eval_ids, c);
  EXPECT_EQ(r.predicted_tokens, static_cast<std::int64_t>(ids.size()) - 1);
  EXPECT_NEAR(r.nll_sum, golden_nll, 1e-5 * golden_nll);
  EXPECT_NEAR(r.ppl, std::exp(golden_nll / (ids.size() - 1)), 5e-4 * r.ppl);  // the 0.05 % bar
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenWindow, ::testing::Values("tiny", "small"));

// The whole generic eval set of tiny (939 windows, about a minute on two
// cores) against reference.json; small's full sets are in the bench script.
TEST(EvalReference, TinyGenericFullSetMatchesReferenceJson) {
  std::ifstream in(test::fixture("goldens/tiny/reference.json"));
  const auto ref = nlohmann::json::parse(in)["eval_generic"];
  const EvalResult r = evaluate(Model::open(test::fixture("models/tiny")), tiny_eval_ids(), EvalConfig{});
  EXPECT_EQ(r.windows, ref["windows"].get<int>());
  EXPECT_EQ(r.predicted_tokens, ref["predicted_tokens"].get<std::int64_t>());
  EXPECT_NEAR(r.ppl, ref["ppl"].get<double>(), 5e-4 * ref["ppl"].get<double>());  // the 0.05 % bar
  EXPECT_NEAR(r.nll_sum, ref["nll_sum"].get<double>(), 1e-6 * ref["nll_sum"].get<double>());
}

TEST(Eval, SelfReferenceHasZeroKlAndFullAgreement) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const EvalResult r = evaluate(tiny, tiny_eval_ids(), fast_config(), &tiny);
  ASSERT_TRUE(r.kl && r.top1);
  EXPECT_NEAR(*r.kl, 0.0, 1e-9);
  EXPECT_EQ(*r.top1, 1.0);
  EXPECT_EQ(r.windows, fast_windows);
  EXPECT_EQ(r.predicted_tokens, fast_windows * 511);
}

TEST(Eval, MatchesStraightforwardComputationAgainstPerturbedCopy) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const Model coarse = Model::open(perturbed_tiny(test::temp_dir("coarse"), 4));
  const auto ids = tiny_eval_ids();
  const EvalResult r = evaluate(coarse, ids, fast_config(), &tiny);
  const Straightforward s = straightforward(coarse, tiny, ids, 512, fast_windows);
  ASSERT_TRUE(r.kl && r.top1);
  EXPECT_GT(*r.kl, 1e-4);  // 4-bit mantissas visibly change the distribution
  EXPECT_LT(*r.top1, 1.0);
  EXPECT_EQ(r.predicted_tokens, s.positions);
  EXPECT_NEAR(r.nll_sum, s.nll, sum_tolerance * s.nll);
  EXPECT_NEAR(*r.kl, s.kl / s.positions, 1e-3 * s.kl / s.positions);
  // Top-1 may flip only where two logits tie within float rounding.
  EXPECT_NEAR(*r.top1, double(s.agree) / s.positions, 2.0 / s.positions);
}

TEST(Eval, ResultDoesNotDependOnBatchingOrResidency) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const auto ids = tiny_eval_ids();
  EvalConfig batched = fast_config();
  EvalConfig streamed = fast_config();
  streamed.batch_windows = 1;
  streamed.resident_budget_bytes = 0;
  const EvalResult a = evaluate(tiny, ids, batched), b = evaluate(tiny, ids, streamed);
  EXPECT_NEAR(a.nll_sum, b.nll_sum, sum_tolerance * a.nll_sum);
  EXPECT_EQ(a.predicted_tokens, b.predicted_tokens);
}

TEST(Eval, RejectsTooFewTokensAndOutOfVocabIds) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  std::vector<std::int32_t> ids(100, 1);
  EXPECT_THROW(evaluate(tiny, ids, EvalConfig{}), InputError);
  ids.assign(512, 1);
  ids[7] = 2048;  // vocab is 2048
  try {
    evaluate(tiny, ids, EvalConfig{});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("2048"), std::string::npos) << e.what();
  }
}

// Runs `ptq eval` on tiny's first 3 windows with `input` ("--ids F" or
// "--text F") and returns its JSON.
nlohmann::json run_cli_eval(const std::string& input, const std::filesystem::path& dir) {
  const auto json_path = dir / "eval.json";
  const std::string cmd = test::ptq_binary().string() + " eval --model " +
                          test::fixture("models/tiny").string() + " " + input +
                          " --max-windows 3 --threads 2 --json " + json_path.string() +
                          " 2>/dev/null >/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_FALSE(std::filesystem::exists(dir / "eval.json.tmp"));
  std::ifstream in(json_path);
  return nlohmann::json::parse(in);
}

// The CLI end to end: its JSON against evaluate() on the same windows.
TEST(EvalCli, WritesJsonMatchingLibraryResult) {
  const auto j = run_cli_eval("--ids " + test::fixture("goldens/tiny/eval_generic.ids").string(),
                              test::temp_dir("cli"));
  EvalConfig c;
  c.max_windows = 3;
  const EvalResult r = evaluate(Model::open(test::fixture("models/tiny")), tiny_eval_ids(), c);
  EXPECT_EQ(j.at("windows").get<int>(), 3);
  EXPECT_EQ(j.at("predicted_tokens").get<std::int64_t>(), r.predicted_tokens);
  EXPECT_NEAR(j.at("nll_sum").get<double>(), r.nll_sum, sum_tolerance * r.nll_sum);
  EXPECT_NEAR(j.at("ppl").get<double>(), r.ppl, 1e-6 * r.ppl);
}

// --text tokenizes the whole file with the model's tokenizer: the same
// windows as the golden ids (PROTOCOL.md step 1), hence the same result.
TEST(EvalCli, TextInputMatchesGoldenIds) {
  const auto from_ids = run_cli_eval(
      "--ids " + test::fixture("goldens/tiny/eval_generic.ids").string(), test::temp_dir("ids"));
  const auto from_text =
      run_cli_eval("--text " + test::fixture("corpus/generic_eval/wikitext2_test.txt").string(),
                   test::temp_dir("text"));
  EXPECT_EQ(from_text.at("nll_sum").get<double>(), from_ids.at("nll_sum").get<double>());
  EXPECT_EQ(from_text.at("predicted_tokens"), from_ids.at("predicted_tokens"));
}

TEST(EvalCli, MissingModelIsAnInputErrorExit) {
  const std::string cmd = test::ptq_binary().string() + " eval --model /nonexistent --ids " +
                          test::fixture("goldens/tiny/eval_generic.ids").string() +
                          " 2>/dev/null >/dev/null";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace ptq
