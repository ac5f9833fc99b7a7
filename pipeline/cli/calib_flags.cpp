#include "pipeline/cli/calib_flags.hpp"

namespace ptq::cli {

void add_calib_flags(CLI::App& cmd, CalibFlags& f) {
  cmd.add_option("--calib", f.calib, "Calibration source NAME=PATH[:WEIGHT] (text, folder, .jsonl or .ids)");
  cmd.add_option("--calib-ids", f.calib_ids, "Shorthand for one .ids calibration source")->check(CLI::ExistingFile);
  cmd.add_option("--field", f.field, "Text field of .jsonl calibration sources");
  cmd.add_option("--samples", f.samples, "Calibration windows in all");
  cmd.add_option("--seqlen", f.seqlen, "Tokens per calibration window");
  cmd.add_option("--seed", f.seed, "Seed of the window draw from text sources");
}

void apply_calib_flags(const CalibFlags& f, const CLI::App& cmd, CalibConfig& config,
                       std::vector<CalibSourceSpec>& sources) {
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  if (given("--samples")) config.samples = f.samples;
  if (given("--seqlen")) config.seqlen = f.seqlen;
  if (given("--seed")) config.seed = f.seed;
  if (given("--field")) config.jsonl_field = f.field;
  if (given("--calib") || given("--calib-ids")) {
    sources.clear();
    for (const auto& spec : f.calib) sources.push_back(parse_calib_spec(spec));
    if (!f.calib_ids.empty())
      sources.push_back({std::filesystem::path(f.calib_ids).stem().string(), f.calib_ids, 1.0});
  }
}

}  // namespace ptq::cli
