#pragma once
// The calibration-data flags shared by `ptq quantize` and `ptq calibrate`:
// --calib, --calib-ids, --field, --record-calibration-windows and the recipe's
// calibration.* keys (--samples, --seqlen, --seed).
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/cli/recipe_flags.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/provenance.hpp"

namespace ptq::cli {

struct CalibFlags {
  std::vector<std::string> calib;
  std::string calib_ids, field = "text";
  RecipeFlags config;  // the calibration.* recipe keys
  bool record_windows = false;

  // What the output keeps of the windows: hashes unless asked for the tokens.
  WindowRecord window_record() const {
    return record_windows ? WindowRecord::token_ids : WindowRecord::hashes;
  }
};

void add_calib_flags(CLI::App& cmd, CalibFlags& flags);

// Overrides `config` and `sources` with the flags given on the command line;
// flags not given leave them unchanged.
void apply_calib_flags(const CalibFlags& flags, const CLI::App& cmd, CalibConfig& config,
                       std::vector<CalibSourceSpec>& sources);

}  // namespace ptq::cli
