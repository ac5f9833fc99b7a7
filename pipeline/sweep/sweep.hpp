#pragma once
// `ptq sweep`: how the calibration mix moves quality. The share of the last
// calibration source (e.g. the domain text) runs over a list of percentages,
// the other sources splitting the rest by their weights; every mix is
// quantized with one recipe and the variants are reported side by side
// (ptq report) with the quality-per-text curve against the share.
//
// Where the method allows it (GPTQ, or RTN with a refit, no scaling search),
// every mix is quantized from one `ptq calibrate` file of per-source statistics
// (no forward pass per mix: the float-activation approximation of
// docs/calibration.md); the shares in `exact` are also run sequentially on the
// mixed windows themselves. Other methods run every share exactly.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/recipe/recipe.hpp"
#include "pipeline/report/report.hpp"

namespace ptq {

struct SweepConfig {
  std::filesystem::path model;
  std::vector<CalibSourceSpec> sources;  // two or more; shares move the last one
  std::vector<int> shares;               // percent of the last source, 0..100
  std::vector<int> exact;                // shares also run exactly (with statistics)
  Recipe recipe;                         // its own sources are replaced by the mixes
  ReportConfig report;                   // texts, tasks, limits; baseline and variants are the sweep's
  int threads = 0;

  void validate() const;  // InputError naming the flag
};

// Writes <out>/<variant>/ per mix, <out>/stats.h5 (with statistics) and
// <out>/report/; the whole folder appears when complete.
void run_sweep(const SweepConfig& config, const std::filesystem::path& out,
               const std::function<void(const std::string&)>& log);

}  // namespace ptq
