#include "pipeline/sweep/sweep.hpp"

#include <algorithm>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/output_path.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/quantize/quantize_from_stats.hpp"
#include "pipeline/quantize/quantize_run.hpp"

namespace ptq {

void SweepConfig::validate() const {
  if (sources.size() < 2)
    throw input_error("--calib", "two or more sources (the shares move the last one)",
                      std::to_string(sources.size()));
  if (shares.empty()) throw input_error("--shares", "a list of percentages", "none");
  for (const std::vector<int>* list : {&shares, &exact})
    for (int s : *list)
      if (s < 0 || s > 100) throw input_error("--shares / --exact", "percentages 0..100", std::to_string(s));
  for (int s : exact)
    if (std::find(shares.begin(), shares.end(), s) == shares.end())
      throw input_error("--exact " + std::to_string(s), "one of --shares", "another value");
  if (report.texts.empty() && report.tasks.empty()) throw input_error("ptq sweep", "--eval or --tasks", "neither");
}

namespace {

// The sources weighted for `share` % of the last one; a source of weight 0 left out.
std::vector<CalibSourceSpec> mix_for(const std::vector<CalibSourceSpec>& sources, int share) {
  double others = 0;
  for (std::size_t i = 0; i + 1 < sources.size(); ++i) others += sources[i].weight;
  std::vector<CalibSourceSpec> mix;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    CalibSourceSpec s = sources[i];
    s.weight = i + 1 == sources.size() ? share / 100.0 : (100 - share) / 100.0 * s.weight / others;
    if (s.weight > 0) mix.push_back(s);
  }
  return mix;
}

std::string variant_name(const std::vector<CalibSourceSpec>& sources, int share, bool exact) {
  return sources.back().name + "-" + std::to_string(share) + (exact ? "-exact" : "-stats");
}

bool uses_statistics(const Recipe& recipe) {
  try {
    check_recipe_for_stats(recipe);
    return true;
  } catch (const InputError&) {
    return false;
  }
}

// One `ptq calibrate` over every source, each with the windows a run of it
// alone would take.
void calibrate_all(const SweepConfig& c, const std::filesystem::path& file) {
  CalibConfig config = c.recipe.calibration;
  config.samples *= static_cast<int>(c.sources.size());
  std::vector<CalibSourceSpec> equal = c.sources;
  for (CalibSourceSpec& s : equal) s.weight = 1.0;
  const Model model = Model::open(c.model);
  collect_calibration_stats(model, load_calibration(c.model, equal, config), 16, file);
}

}  // namespace

void run_sweep(const SweepConfig& c, const std::filesystem::path& out,
               const std::function<void(const std::string&)>& log) {
  c.validate();
  OutputFolder folder(out, "--out");
  const bool statistics = uses_statistics(c.recipe);
  log(statistics ? "method " + std::string(method_name(c.recipe.method)) +
                       ": every share from one file of per-source statistics (approximation), "
                       "the --exact shares also sequentially"
                 : "method " + std::string(method_name(c.recipe.method)) +
                       ": every share quantized exactly (its search needs the activations themselves)");
  if (statistics) {
    log("calibrate: statistics of every source");
    calibrate_all(c, folder.staging() / "stats.h5");
  }
  ReportConfig report = c.report;
  report.baseline = {c.model.filename().string(), c.model};
  report.threads = c.threads;
  ReportConfig::Sweep sweep{"% " + c.sources.back().name + " in the calibration mix", {}, {}};
  const auto quantize = [&](int share, bool exact) {
    const std::string name = variant_name(c.sources, share, exact);
    log("quantize " + name);
    QuantizeJob job;
    job.model = c.model;
    job.out = folder.staging() / name;
    job.recipe = c.recipe;
    job.threads = c.threads;
    job.recipe.sources = exact ? mix_for(c.sources, share) : std::vector<CalibSourceSpec>{};
    if (!exact) {
      job.stats = folder.staging() / "stats.h5";
      for (const CalibSourceSpec& s : mix_for(c.sources, share)) job.mix.push_back({s.name, s.weight});
    }
    run_quantize(job, {log});
    report.variants.push_back({name, job.out});
    sweep.x.push_back(share);
    sweep.series.push_back(exact ? "exact" : "statistics");
  };
  for (int share : c.shares) quantize(share, !statistics);
  if (statistics)
    for (int share : c.exact) quantize(share, true);
  report.sweep = sweep;
  log("report: evaluating " + std::to_string(report.variants.size()) + " variants");
  std::filesystem::create_directory(folder.staging() / "report");
  write_report_files(measure_report(report, report_progress_bars()), folder.staging() / "report");
  folder.commit();
}

}  // namespace ptq
