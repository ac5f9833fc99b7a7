#pragma once
// `ptq batch`: runs a BatchPlan's jobs into <out>/<model>/<job>/, each a
// `ptq quantize` output folder, then one `ptq report` per model into
// <out>/report/<model>/. Resumable and shareable:
//  - a job's output is committed whole (io/output_path.hpp), then its record
//    "<out>/<model>/<job>.done.json" (the input fingerprint, the worker, the
//    seconds); a job with both and the same fingerprint is skipped, an output
//    without its record (the worker died between the two) is redone, and a
//    record with another fingerprint (inputs changed) is refused, naming it;
//  - each job runs under a JobClaim (claims.hpp), so several workers may run
//    one JOBS.yaml at once, each job committed once; the staging folders a
//    dead worker left are removed by the one that takes its job over;
//  - a job that fails (an InputError: its checkpoint, recipe or data) is
//    logged and left for the next run; the others go on.
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/batch/jobs_file.hpp"

namespace ptq {

struct BatchOptions {
  std::chrono::seconds claim_timeout{600};  // a claim without heartbeat this long is stale
  std::function<void(const std::string&)> log;  // one line per job event
};

struct BatchSummary {
  int skipped = 0;     // done before this run
  int committed = 0;   // by this worker
  int by_others = 0;   // committed by other workers meanwhile
  std::vector<std::string> failed;  // "<job id>: <error>": not retried in this run; no reports then
};

BatchSummary run_batch(const BatchPlan& plan, const std::filesystem::path& out,
                       const BatchOptions& options);

}  // namespace ptq
