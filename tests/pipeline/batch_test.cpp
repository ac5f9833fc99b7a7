// ptq batch: JOBS.yaml read and refused as documented; a batch killed with
// SIGKILL mid-job resumes to model files byte-identical with an uninterrupted
// run; two workers on one JOBS.yaml commit each job once, also when one of
// them is killed mid-job.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/error.hpp"
#include "pipeline/batch/jobs_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

// Three jobs on tiny: GPTQ (seconds), RTN (instant), AWQ (the longest), the
// calibrated two on 32 windows of 256 tokens.
std::filesystem::path write_jobs(const std::filesystem::path& dir, const std::string& extra = "") {
  const auto path = dir / "jobs.yaml";
  const std::string calibration = "calibration: {samples: 32, seqlen: 256}";
  std::ofstream(path) << "models:\n  - " << test::fixture("models/tiny").string() << "\n"
                      << "recipes:\n"
                      << "  - {name: gptq-w4, keys: {method: gptq, bits: 4, group: 128, "
                      << calibration << "}}\n"
                      << "  - {name: rtn-w8, keys: {method: rtn, bits: 8, group: channel}}\n"
                      << "  - {name: awq-w4, keys: {method: awq, bits: 4, group: 128, "
                      << calibration << "}}\n"
                      << "calib: [\"" << test::fixture("goldens/tiny/calib_generic.ids").string()
                      << "\"]\n"
                      << "threads: 2\n"
                      << extra;
  return path;
}

TEST(BatchPlan, ReadsTheJobsAndRefusesBadOnes) {
  const auto dir = test::temp_dir("batch-plan");
  const BatchPlan plan = load_batch_plan(write_jobs(dir, "formats: [gptq, \"gguf:Q4_0\"]\n"));
  ASSERT_EQ(plan.jobs.size(), 6u);
  EXPECT_EQ(plan.jobs[0].id(), "tiny/gptq-w4.gptq");
  EXPECT_EQ(plan.jobs[1].id(), "tiny/gptq-w4.gguf-Q4_0");
  EXPECT_EQ(plan.jobs[1].recipe.gguf_type, "Q4_0");
  EXPECT_EQ(plan.jobs[0].recipe.sources.size(), 1u);  // the batch's calib: for a recipe naming none
  EXPECT_TRUE(plan.jobs[2].recipe.sources.empty());  // RTN needs none
  EXPECT_NE(plan.jobs[0].fingerprint, plan.jobs[1].fingerprint);
  EXPECT_EQ(load_batch_plan(write_jobs(dir, "formats: [gptq, \"gguf:Q4_0\"]\n")).jobs[0].fingerprint,
            plan.jobs[0].fingerprint);
  const struct {
    std::string extra, message;
  } bad[] = {{"formats: [\"gguf:Q9_X\"]\n", "job tiny/gptq-w4.gguf-Q9_X"},
             {"formats: [zip]\n", "format"},
             {"report: {limit: 3}\n", "texts or tasks"}};
  for (const auto& b : bad) {
    SCOPED_TRACE(b.extra);
    try {
      load_batch_plan(write_jobs(dir, b.extra));
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(b.message), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir / "empty.yaml") << "models: []\nrecipes: [x.yaml]\n";
  EXPECT_THROW(load_batch_plan(dir / "empty.yaml"), InputError);
}

// `ptq batch` in the background; its pid.
long start_batch(const std::filesystem::path& jobs, const std::filesystem::path& out,
                 const std::filesystem::path& log) {
  const auto pid_file = log.string() + ".pid";
  const std::string command = test::ptq_binary().string() + " batch " + jobs.string() + " --out " +
                              out.string() + " --claim-timeout 5 >" + log.string() + " 2>&1 & echo $! >" + pid_file;
  EXPECT_EQ(std::system(command.c_str()), 0);
  long pid = 0;
  std::ifstream(pid_file) >> pid;
  return pid;
}

bool running(long pid) { return kill(static_cast<pid_t>(pid), 0) == 0; }

void wait_for(long pid) {
  while (running(pid)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

// Whether the claim file names process `pid` ("host pid").
bool claimed_by(const std::filesystem::path& claim, long pid) {
  std::ifstream in(claim);
  std::string host;
  long holder = 0;
  return static_cast<bool>(in >> host >> holder) && holder == pid;
}

// Waits until at least `records_before_kill` jobs are committed and `worker`
// holds the claim of another, then kills it.
void kill_mid_job(long worker, const std::filesystem::path& model_dir, int records_before_kill) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  for (;;) {
    int records = 0, claims = 0;
    std::error_code absent;  // the batch has not made the folder yet
    for (const auto& e : std::filesystem::directory_iterator(model_dir, absent)) {
      const std::string name = e.path().filename().string();
      records += name.ends_with(".done.json");
      claims += name.ends_with(".claim") && claimed_by(e.path(), worker);
    }
    if (records >= records_before_kill && claims > 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the batch never got there";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(static_cast<pid_t>(worker), SIGKILL);
  wait_for(worker);
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const char* kModelFile = "model.safetensors";
const std::vector<std::string> kJobs = {"gptq-w4", "rtn-w8", "awq-w4"};

TEST(BatchRun, KilledMidJobResumesToTheSameBytes) {
  const auto dir = test::temp_dir("batch-resume");
  const auto jobs = write_jobs(dir, "report: {texts: [\"generic=" +
                                        test::fixture("goldens/tiny/eval_generic.ids").string() +
                                        "\"], max_windows: 2}\n");
  ASSERT_EQ(test::run_ptq("batch " + jobs.string() + " --out " + (dir / "whole").string(), dir / "whole.log"), 0)
      << test::read_bytes(dir / "whole.log");
  const long worker = start_batch(jobs, dir / "killed", dir / "killed.log");
  kill_mid_job(worker, dir / "killed/tiny", 1);
  ASSERT_EQ(test::run_ptq("batch " + jobs.string() + " --out " + (dir / "killed").string(), dir / "resumed.log"), 0)
      << test::read_bytes(dir / "resumed.log");
  const std::string resumed = test::read_bytes(dir / "resumed.log");
  EXPECT_NE(resumed.find("1 done before"), std::string::npos) << resumed;
  EXPECT_NE(resumed.find("taken over from a dead worker"), std::string::npos) << resumed;
  for (const std::string& job : kJobs) {
    SCOPED_TRACE(job);
    EXPECT_EQ(test::read_bytes(dir / "killed/tiny" / job / kModelFile),
              test::read_bytes(dir / "whole/tiny" / job / kModelFile));
  }
  for (const auto& e : std::filesystem::directory_iterator(dir / "killed/tiny"))  // nothing half-written
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << e.path();
  // The summary report over the three jobs, once all are done.
  const auto report = nlohmann::json::parse(test::read_bytes(dir / "killed/report/tiny/report.json"));
  ASSERT_EQ(report["variants"].size(), 3u);
  EXPECT_EQ(report["variants"][2]["name"], "awq-w4");
  EXPECT_TRUE(report["variants"][2]["texts"][0]["kl_mean"].is_number());
  const std::string summary = test::read_bytes(dir / "killed/report/summary.md");
  EXPECT_EQ(count(summary, "| tiny | "), 3) << summary;
  // ptq report --from the batch folder finds the same three variants.
  ASSERT_EQ(test::run_ptq("report --baseline " + test::fixture("models/tiny").string() + " --from " +
                              (dir / "killed").string() + " --text " +
                              test::fixture("goldens/tiny/eval_generic.ids").string() +
                              " --max-windows 1 --out " + (dir / "again").string(),
                          dir / "again.log"),
            0)
      << test::read_bytes(dir / "again.log");
  EXPECT_EQ(nlohmann::json::parse(test::read_bytes(dir / "again/report.json"))["variants"].size(), 3u);
}

TEST(BatchRun, TwoWorkersCommitEachJobOnceEvenWhenOneIsKilled) {
  const auto dir = test::temp_dir("batch-workers");
  const auto jobs = write_jobs(dir);
  for (const bool kill_one : {false, true}) {
    SCOPED_TRACE(kill_one ? "one killed mid-job" : "both run through");
    const auto out = dir / (kill_one ? "killed" : "both");
    const long a = start_batch(jobs, out, dir / "a.log");
    const long b = start_batch(jobs, out, dir / "b.log");
    if (kill_one) kill_mid_job(a, out / "tiny", 0);
    wait_for(a);
    wait_for(b);
    const std::string logs = test::read_bytes(dir / "a.log") + test::read_bytes(dir / "b.log");
    for (const std::string& job : kJobs) {
      EXPECT_EQ(count(logs, "tiny/" + job + ": committed"), 1) << job << "\n" << logs;
      EXPECT_TRUE(std::filesystem::exists(out / "tiny" / job / kModelFile));
      EXPECT_TRUE(std::filesystem::exists(out / "tiny" / (job + ".done.json")));
    }
  }
}

// A job that fails (here a checkpoint folder without weights) is logged and
// left; the other jobs are committed, the run exits non-zero, no report.
TEST(BatchRun, AFailedJobLeavesTheOthersAndNoReport) {
  const auto dir = test::temp_dir("batch-failed");
  std::filesystem::create_directory(dir / "broken");
  std::filesystem::copy_file(test::fixture("models/tiny/config.json"), dir / "broken/config.json");
  std::ofstream(dir / "jobs.yaml") << "models: [" << test::fixture("models/tiny").string() << ", "
                                   << (dir / "broken").string() << "]\n"
                                   << "recipes: [{name: rtn-w8, keys: {method: rtn, bits: 8, group: channel}}]\n"
                                   << "report: {texts: [\"" << test::fixture("goldens/tiny/eval_generic.ids").string()
                                   << "\"], max_windows: 1}\n";
  EXPECT_NE(test::run_ptq("batch " + (dir / "jobs.yaml").string() + " --out " + (dir / "out").string(), dir / "log"), 0);
  const std::string log = test::read_bytes(dir / "log");
  EXPECT_NE(log.find("broken/rtn-w8: failed: "), std::string::npos) << log;
  EXPECT_NE(log.find("1 job(s) failed"), std::string::npos) << log;
  EXPECT_TRUE(std::filesystem::exists(dir / "out/tiny/rtn-w8.done.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out/broken/rtn-w8"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out/report/tiny"));
}

}  // namespace
}  // namespace ptq
