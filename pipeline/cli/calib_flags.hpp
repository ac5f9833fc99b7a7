#pragma once
// The calibration-data flags shared by `ptq quantize` and `ptq calibrate`:
// --calib, --calib-ids, --samples, --seqlen, --seed, --field.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/calib_data.hpp"

namespace ptq::cli {

struct CalibFlags {
  std::vector<std::string> calib;
  std::string calib_ids, field = "text";
  int samples = 128, seqlen = 512;
  std::uint64_t seed = 0;
};

void add_calib_flags(CLI::App& cmd, CalibFlags& flags);

// Overrides `config` and `sources` with the flags given on the command line;
// flags not given leave them unchanged.
void apply_calib_flags(const CalibFlags& flags, const CLI::App& cmd, CalibConfig& config,
                       std::vector<CalibSourceSpec>& sources);

}  // namespace ptq::cli
