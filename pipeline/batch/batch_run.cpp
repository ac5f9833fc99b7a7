#include "pipeline/batch/batch_run.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "io/error.hpp"
#include "io/hash.hpp"
#include "io/output_path.hpp"
#include "io/text_file.hpp"
#include "pipeline/batch/claims.hpp"
#include "pipeline/quantize/quantize_run.hpp"

namespace ptq {
namespace {

using Clock = std::chrono::steady_clock;

struct JobPaths {
  std::filesystem::path output, record, claim;
};

JobPaths paths_of(const std::filesystem::path& out, const std::string& model, const std::string& name) {
  const auto dir = out / model;
  return {dir / name, dir / (name + ".done.json"), dir / ("." + name + ".claim")};
}

JobPaths paths_of(const std::filesystem::path& out, const BatchJob& job) {
  return paths_of(out, job.model_name, job.name);
}

// Whether the job's output and its record are there with this fingerprint;
// InputError where the record names other inputs.
bool finished(const JobPaths& p, const std::string& fingerprint, const std::string& id) {
  std::ifstream in(p.record);
  if (!in) return false;
  const auto record = nlohmann::json::parse(in, nullptr, false);
  const std::string recorded = record.is_object() ? record.value("fingerprint", "") : "";
  if (recorded != fingerprint)
    throw input_error(p.record.string(), "job " + id + "'s inputs (fingerprint " + fingerprint + ")",
                      "fingerprint " + recorded + ": its inputs changed; remove " +
                          p.output.string() + " and the record to redo it");
  return std::filesystem::is_directory(p.output);
}

// What a dead worker left of the job: its staging folders, and an output
// committed without its record.
void clear_leftovers(const JobPaths& p) {
  std::string prefix(1, '.');
  prefix.append(p.output.filename().string()).append(".ptq-");
  for (const auto& entry : std::filesystem::directory_iterator(p.output.parent_path()))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove_all(entry.path());
  if (!std::filesystem::exists(p.record)) std::filesystem::remove_all(p.output);
}

void write_record(const JobPaths& p, const std::string& fingerprint, double seconds) {
  const nlohmann::ordered_json record = {
      {"fingerprint", fingerprint}, {"worker", worker_id()}, {"seconds", seconds}};
  write_text_atomic(p.record, record.dump(1) + "\n");
}

class Worker {
 public:
  Worker(const BatchPlan& plan, const std::filesystem::path& out, const BatchOptions& options)
      : plan_(plan), out_(out), options_(options) {}

  // Whether this call finished (or found finished) the job.
  bool try_job(std::size_t i, BatchSummary& summary) {
    const BatchJob& job = plan_.jobs[i];
    const JobPaths p = paths_of(out_, job);
    if (finished(p, job.fingerprint, job.id())) return true;
    const auto claim = JobClaim::try_take(p.claim, options_.claim_timeout);
    if (!claim) return false;
    if (finished(p, job.fingerprint, job.id())) return true;  // committed while we looked
    clear_leftovers(p);
    say(i, claim->took_over() ? "quantizing (taken over from a dead worker)" : "quantizing");
    const auto start = Clock::now();
    QuantizeJob q;
    q.model = job.model;
    q.out = p.output;
    q.recipe = job.recipe;
    q.threads = plan_.threads;
    run_quantize(q, {});
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    write_record(p, job.fingerprint, seconds);
    ++summary.committed;
    say(i, "committed in " + std::to_string(static_cast<int>(seconds + 0.5)) + " s");
    return true;
  }

  void say(std::size_t i, const std::string& what) const {
    if (!options_.log) return;
    std::string line(1, '[');
    line.append(std::to_string(i + 1)).append("/").append(std::to_string(plan_.jobs.size()));
    options_.log(line.append("] ").append(plan_.jobs[i].id()).append(": ").append(what));
  }

 private:
  const BatchPlan& plan_;
  const std::filesystem::path& out_;
  const BatchOptions& options_;
};

// The jobs of one model as report variants.
ReportConfig model_report(const BatchPlan& plan, const std::filesystem::path& out, const std::string& model) {
  ReportConfig c = *plan.report;
  for (const BatchJob& job : plan.jobs) {
    if (job.model_name != model) continue;
    c.baseline = {model, job.model};
    c.variants.push_back({job.name, paths_of(out, job).output});
  }
  c.threads = plan.threads;
  return c;
}

// DIR/report/summary.md: every job of every model in one table, from the
// models' report.json files.
void write_summary(const std::set<std::string>& models, const std::filesystem::path& out) {
  std::string md =
      "# ptq batch summary\n\nOne row per job; each model's full report is in report/<model>/.\n\n"
      "| model | job | kind | bits/weight | recommendation | decided by |\n|---|---|---|---:|---|---|\n";
  for (const std::string& model : models) {
    std::ifstream in(out / "report" / model / "report.json");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object()) continue;
    for (const auto& v : j["variants"]) {
      char bpw[32];
      std::snprintf(bpw, sizeof bpw, "%.2f", v["bits_per_weight"].get<double>());
      md.append("| ").append(model).append(" | ").append(v["name"].get<std::string>());
      md.append(" | ").append(v["kind"].get<std::string>()).append(" | ").append(bpw);
      md.append(" | ").append(v["recommendation"]["verdict"].get<std::string>());
      md.append(" | ").append(v["recommendation"]["decided_by"].get<std::string>()).append(" |\n");
    }
  }
  write_text_atomic(out / "report" / "summary.md", md);
}

// One report per model once all its jobs are done, under a claim of its own;
// its record holds the fingerprint of its jobs' fingerprints.
void write_reports(const BatchPlan& plan, const std::set<std::string>& models, const std::filesystem::path& out,
                   const BatchOptions& options) {
  std::filesystem::create_directories(out / "report");
  for (const std::string& model : models) {
    Fnv1a64 h;
    for (const BatchJob& job : plan.jobs)
      if (job.model_name == model) h.update(job.fingerprint);
    const JobPaths p = paths_of(out, "report", model);
    if (finished(p, h.hex(), "report/" + model)) continue;
    const auto claim = JobClaim::try_take(p.claim, options.claim_timeout);
    if (!claim || finished(p, h.hex(), "report/" + model)) continue;
    clear_leftovers(p);
    if (options.log) options.log("report " + model + ": evaluating");
    OutputFolder folder(p.output, "report " + model);
    write_report_files(measure_report(model_report(plan, out, model), report_progress_bars()), folder.staging());
    folder.commit();
    write_record(p, h.hex(), 0);
    if (options.log) options.log("report " + model + ": " + (p.output / "report.html").string());
  }
  write_summary(models, out);
}

}  // namespace

BatchSummary run_batch(const BatchPlan& plan, const std::filesystem::path& out, const BatchOptions& options) {
  // An earlier run's folder is resumed: a real directory (never a symlink) or a new path.
  const auto status = std::filesystem::symlink_status(out);
  if (std::filesystem::exists(status) && status.type() != std::filesystem::file_type::directory)
    throw input_error("--out " + out.string(), "a folder or a new path", "another kind of file (or a symlink)");
  if (!std::filesystem::exists(status)) check_output_path(out, OutputKind::folder, "--out");
  std::set<std::string> models;
  for (const BatchJob& job : plan.jobs) models.insert(job.model_name);
  for (const std::string& m : models) std::filesystem::create_directories(out / m);
  BatchSummary summary;
  std::vector<bool> done(plan.jobs.size(), false);
  for (std::size_t i = 0; i < plan.jobs.size(); ++i)  // refuses changed inputs before any work
    if (finished(paths_of(out, plan.jobs[i]), plan.jobs[i].fingerprint, plan.jobs[i].id())) {
      done[i] = true;
      ++summary.skipped;
    }
  Worker worker(plan, out, options);
  for (std::size_t left = plan.jobs.size() - summary.skipped; left > 0;) {
    bool progressed = false;
    for (std::size_t i = 0; i < plan.jobs.size(); ++i) {
      try {
        if (done[i] || !worker.try_job(i, summary)) continue;
      } catch (const InputError& e) {
        summary.failed.push_back(plan.jobs[i].id() + ": " + e.what());
        worker.say(i, std::string("failed: ") + e.what());
      }
      done[i] = progressed = true;
      --left;
    }
    if (!progressed && left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // others hold them
  }
  summary.by_others = static_cast<int>(plan.jobs.size() - summary.failed.size()) - summary.skipped -
                      summary.committed;
  if (plan.report && summary.failed.empty()) write_reports(plan, models, out, options);
  return summary;
}

}  // namespace ptq
