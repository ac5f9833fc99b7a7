#pragma once
// `ptq batch`'s JOBS.yaml: checkpoints x recipes x formats, every job checked
// before the first one runs.
//
//   models:            # a checkpoint folder, or {name: NAME, path: FOLDER}
//     - ../shared/fixtures/models/tiny
//   recipes:           # a recipe file, or {name: NAME, recipe: FILE}, or
//     - recipes/gptq-w4-g128.yaml       # {name: NAME, keys: {method: rtn, bits: 8, ...}}
//     - {name: rtn-w8, keys: {method: rtn, bits: 8, group: channel}}
//   formats: [gptq, "gguf:Q4_K_M"]     # optional: FORMAT or gguf:TYPE; default each recipe's own
//   calib: ["g=calib.ids:0.7", "d=domain.ids:0.3"]  # optional: for recipes that name no sources
//   threads: 2         # optional, per job
//   report:            # optional: one ptq report per model over its jobs
//     texts: ["generic=eval.ids"]
//     tasks: [arc_easy_test.jsonl]
//     limit: 200
//     max_windows: 8
//
// Relative paths are relative to the JOBS.yaml file's folder.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/recipe/recipe.hpp"
#include "pipeline/report/report.hpp"

namespace ptq {

struct BatchJob {
  std::string model_name, name;  // the output is <out>/<model_name>/<name>
  std::filesystem::path model;
  Recipe recipe;
  // FNV-1a 64 of the inputs: the checkpoint's files, the recipe as written,
  // the calibration sources' files. A finished output records it.
  std::string fingerprint;
  std::string id() const { return model_name + "/" + name; }
};

struct BatchPlan {
  std::filesystem::path jobs_file;
  std::vector<BatchJob> jobs;  // models x recipes x formats, in that order
  int threads = 0;
  // Texts, tasks and limits of the per-model report (baseline and variants are
  // filled in by the run); absent without a report: section.
  std::optional<ReportConfig> report;
};

// InputError naming the file and key on anything malformed, a job whose recipe
// does not validate (named by its id), or two jobs with one output name.
BatchPlan load_batch_plan(const std::filesystem::path& jobs_file);

}  // namespace ptq
