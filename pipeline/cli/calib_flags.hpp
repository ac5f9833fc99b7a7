#pragma once
// The calibration-data flags shared by `ptq quantize` and `ptq calibrate`:
// --calib, --calib-ids, --field, and the recipe's calibration.* keys
// (--samples, --seqlen, --seed).
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/cli/recipe_flags.hpp"
#include "pipeline/recipe/calib_data.hpp"

namespace ptq::cli {

struct CalibFlags {
  std::vector<std::string> calib;
  std::string calib_ids, field = "text";
  RecipeFlags config;  // the calibration.* recipe keys
};

void add_calib_flags(CLI::App& cmd, CalibFlags& flags);

// Overrides `config` and `sources` with the flags given on the command line;
// flags not given leave them unchanged.
void apply_calib_flags(const CalibFlags& flags, const CLI::App& cmd, CalibConfig& config,
                       std::vector<CalibSourceSpec>& sources);

}  // namespace ptq::cli
