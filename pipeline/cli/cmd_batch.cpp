// ptq batch JOBS.yaml --out DIR [--claim-timeout S]
#include <cstdio>
#include <memory>

#include "io/error.hpp"
#include "pipeline/batch/batch_run.hpp"
#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_batch(CLI::App& app) {
  struct Flags {
    std::string jobs, out;
    int claim_timeout = 600;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "batch", "Checkpoints x recipes x formats from JOBS.yaml, resumable, shareable by several "
               "workers, and a report per model (docs/batch.md)");
  cmd->add_option("jobs", f->jobs, "JOBS.yaml")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", f->out, "Output folder (created; an earlier run's is resumed)")->required();
  cmd->add_option("--claim-timeout", f->claim_timeout,
                  "Seconds without a heartbeat after which another node's claim on a job is taken "
                  "over (a dead process of this host's is taken over at once)")
      ->capture_default_str();
  cmd->callback([f] {
    const BatchPlan plan = load_batch_plan(f->jobs);
    BatchOptions options{.claim_timeout = std::chrono::seconds(f->claim_timeout),
                         .log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
    const BatchSummary s = run_batch(plan, f->out, options);
    std::printf("%zu jobs: %d done before, %d committed by this worker, %d by others\n", plan.jobs.size(),
                s.skipped, s.committed, s.by_others);
    if (!s.failed.empty())
      throw InputError(std::to_string(s.failed.size()) + " job(s) failed (run again to retry them): " + s.failed.front());
  });
}

}  // namespace ptq::cli
