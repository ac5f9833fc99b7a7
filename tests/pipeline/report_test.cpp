// ptq report: the paired interval against its normal approximation, the
// verdict rules on made-up measurements, and the end-to-end run of the issue:
// tiny quantized seven ways, every applicable column filled, all three
// verdicts, and report.html rendered by headless Chromium without console
// messages, with its plots and tables in the DOM (a screenshot is kept).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "pipeline/report/report.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

std::vector<char> answers(int right, int wrong) {
  std::vector<char> v(static_cast<std::size_t>(right + wrong), 0);
  std::fill_n(v.begin(), right, char{1});
  return v;
}

// 200 items: the variant loses 30 the baseline got right and gains 10 it got
// wrong. Mean change -10 points; the differences' standard error is
// sqrt((40/200 - 0.1^2) / 200) = 3.08 points, so the normal 95 % interval is
// -10 -/+ 6.04. The bootstrap's must be close to it.
TEST(ReportStats, PairedChangeMatchesTheNormalApproximation) {
  std::vector<char> baseline = answers(100, 100), variant = baseline;
  for (int i = 0; i < 30; ++i) variant[static_cast<std::size_t>(i)] = 0;
  for (int i = 100; i < 110; ++i) variant[static_cast<std::size_t>(i)] = 1;
  const PairedChange c = paired_change(baseline, variant, 4000, 7);
  EXPECT_DOUBLE_EQ(c.points, -10.0);
  EXPECT_NEAR(c.low, -16.04, 0.8);
  EXPECT_NEAR(c.high, -3.96, 0.8);
  EXPECT_TRUE(c.significant());
  const PairedChange again = paired_change(baseline, variant, 4000, 7);
  EXPECT_EQ(again.low, c.low);
  EXPECT_EQ(again.high, c.high);
  const PairedChange same = paired_change(baseline, baseline, 1000, 7);
  EXPECT_EQ(same.points, 0.0);
  EXPECT_FALSE(same.significant());
}

VariantReport with_task(double baseline_acc, double acc, double low, double high) {
  VariantReport v;
  TaskMetrics t;
  t.task = "arc";
  t.acc = acc;
  t.acc_change = PairedChange{100 * (acc - baseline_acc), low, high};
  v.tasks.push_back(t);
  TextMetrics text;
  text.text = "generic";
  text.ppl_change_pct = 1.0;
  text.kl_mean = 0.01;
  v.texts.push_back(text);
  return v;
}

TEST(ReportRecommend, TaskThresholdsDecideAndDisagreementIsFlagged) {
  const Thresholds t;
  // Relative changes -1 %, -3 %, -10 % of a 50 % baseline, all significant.
  EXPECT_EQ(recommend(with_task(0.5, 0.495, -0.9, -0.1), t).verdict, Verdict::deploy);
  EXPECT_EQ(recommend(with_task(0.5, 0.485, -2.5, -0.5), t).verdict, Verdict::consider);
  const Recommendation dont = recommend(with_task(0.5, 0.45, -8, -2), t);
  EXPECT_EQ(dont.verdict, Verdict::dont);
  EXPECT_NE(dont.decided_by.find("arc acc -10.0 %"), std::string::npos) << dont.decided_by;
  ASSERT_EQ(dont.flags.size(), 1u);  // perplexity +1 % would say deploy
  EXPECT_NE(dont.flags[0].find("perplexity says deploy"), std::string::npos) << dont.flags[0];
  // Within noise, and KL says worse: KL decides.
  VariantReport noisy = with_task(0.5, 0.495, -3, 2);
  noisy.texts[0].kl_mean = 0.5;
  const Recommendation by_kl = recommend(noisy, t);
  EXPECT_EQ(by_kl.verdict, Verdict::dont);
  EXPECT_NE(by_kl.decided_by.find("generic KL 0.5000"), std::string::npos) << by_kl.decided_by;
  EXPECT_FALSE(by_kl.significant);
  // No tasks: KL alone.
  VariantReport texts_only;
  texts_only.texts = noisy.texts;
  texts_only.texts[0].kl_mean = 0.05;
  EXPECT_EQ(recommend(texts_only, t).verdict, Verdict::consider);
}

// ptq quantize of tiny into `dir/name`; the command's log beside it.
std::filesystem::path quantize(const std::filesystem::path& dir, const std::string& name,
                               const std::string& args) {
  const std::string calib = " --calib-ids " +
                            test::fixture("goldens/tiny/calib_generic.ids").string() +
                            " --samples 32 --seqlen 256";
  const std::string needs_calib = args.find("rtn") == std::string::npos ? calib : "";
  const int rc = test::run_ptq("quantize --model " + test::fixture("models/tiny").string() + " " +
                                   args + needs_calib + " --threads 2 --out " + (dir / name).string(),
                               dir / (name + ".log"));
  EXPECT_EQ(rc, 0) << test::read_bytes(dir / (name + ".log"));
  return dir / name;
}

// Runs a command through the shell; its standard output and error together.
std::string shell_output(const std::string& command) {
  std::string out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  pclose(pipe);
  return out;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void expect_renders_in_chromium(const std::filesystem::path& html, const std::filesystem::path& dir) {
  const std::string chromium = "chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 ";
  const std::string dom = shell_output(chromium + "--dump-dom file://" + html.string());
  ASSERT_NE(dom.find("</html>"), std::string::npos) << "no page from chromium:\n" << dom.substr(0, 2000);
  EXPECT_EQ(count(dom, ":CONSOLE("), 0) << dom.substr(0, 4000);  // the page has no script to log
  // Two texts and one task: two scatters each, an interval plot, the heatmap;
  // the recommendation, size and one table per text and task.
  EXPECT_EQ(count(dom, "<svg"), 6);
  EXPECT_EQ(count(dom, "class=\"pareto\""), 4);
  EXPECT_EQ(count(dom, "<table"), 5);
  EXPECT_GE(count(dom, "<circle"), 3 * 7);
  shell_output(chromium + "--window-size=1280,2600 --screenshot=" + (dir / "report.png").string() +
               " file://" + html.string());
  EXPECT_GT(std::filesystem::file_size(dir / "report.png"), 10000u);
}

TEST(ReportEndToEnd, TinySevenWaysEveryColumnAndAllThreeVerdicts) {
  const auto dir = test::temp_dir("report-e2e");
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"rtn-w8", "--method rtn --bits 8 --group channel"},
      {"rtn-w4-g128", "--method rtn --bits 4 --group 128"},
      {"gptq-w4-g128", "--method gptq --bits 4 --group 128"},
      {"awq-w4-g128", "--method awq --bits 4 --group 128"},
      {"w8a8-sq", "--recipe " + (test::source_dir() / "recipes/w8a8-smoothquant-a0.5.yaml").string()},
      {"gguf-q4_k_m", "--method rtn --format gguf --gguf-type Q4_K_M"},
      {"rtn-w2", "--method rtn --bits 2 --group 128"}};
  std::string args = "report --baseline " + test::fixture("models/tiny").string() +
                     " --text generic=" + test::fixture("goldens/tiny/eval_generic.ids").string() +
                     " --text domain=" + test::fixture("goldens/tiny/eval_domain.ids").string() +
                     " --tasks " + test::fixture("tasks/arc_easy_test.jsonl").string() +
                     " --limit 200 --max-windows 8 --threads 2 --llama-bench " +
                     (test::shared_dir() / "tools/llama.cpp/llama-bench").string();
  for (const auto& [name, flags] : variants) args += " --variant " + name + "=" + quantize(dir, name, flags).string();
  ASSERT_EQ(test::run_ptq(args + " --out " + (dir / "report").string(), dir / "report.log"), 0)
      << test::read_bytes(dir / "report.log");

  const auto j = nlohmann::json::parse(test::read_bytes(dir / "report/report.json"));
  EXPECT_EQ(j["schema"], "ptq-report");
  std::set<std::string> verdicts;
  for (const auto& v : j["variants"]) {
    SCOPED_TRACE(v["name"].get<std::string>());
    for (const char* key : {"model_bytes", "bits_per_weight", "eval_peak_bytes", "quantize_seconds",
                            "quantize_peak_bytes", "serve_bytes_estimate"})
      EXPECT_FALSE(v[key].is_null()) << key;
    for (const auto& t : v["texts"])
      for (const char* key : {"ppl", "kl_mean", "kl_p99", "kl_p999", "top1"}) EXPECT_TRUE(t[key].is_number()) << key;
    EXPECT_TRUE(v["tasks"][0]["acc_change"]["low"].is_number());
    const bool gguf = v["kind"] == "gguf";
    EXPECT_EQ(v["prompt_tps"].is_number(), gguf);
    EXPECT_EQ(v["generation_tps"].is_number(), gguf);
    EXPECT_EQ(v.contains("speed_note"), !gguf);  // says why the speed columns are empty
    EXPECT_EQ(v["layers"].empty(), gguf);  // llama.cpp's own rounding records no per-Linear error
    verdicts.insert(v["recommendation"]["verdict"].get<std::string>());
  }
  EXPECT_EQ(verdicts, (std::set<std::string>{"deploy", "consider", "don't"}));
  EXPECT_EQ(j["variants"][0]["recommendation"]["verdict"], "deploy");  // W8
  EXPECT_EQ(j["variants"][6]["recommendation"]["verdict"], "don't");   // W2
  const std::string md = test::read_bytes(dir / "report/report.md");
  EXPECT_NE(md.find("n/a: not GGUF"), std::string::npos);
  expect_renders_in_chromium(dir / "report/report.html", dir);
}

}  // namespace
}  // namespace ptq
