#include "pipeline/cli/calib_flags.hpp"

namespace ptq::cli {

void add_calib_flags(CLI::App& cmd, CalibFlags& f) {
  cmd.add_option("--calib", f.calib, "Calibration source NAME=PATH[:WEIGHT] (text, folder, .jsonl or .ids)");
  cmd.add_option("--calib-ids", f.calib_ids, "Shorthand for one .ids calibration source")->check(CLI::ExistingFile);
  cmd.add_option("--field", f.field, "Text field of .jsonl calibration sources");
  cmd.add_flag("--record-calibration-windows", f.record_windows,
               "Store the calibration windows' token ids and the sources' full paths in the "
               "output (default: each window's hash and the file names; the output is shared, "
               "the windows are the calibration text)");
  add_recipe_flags(cmd, f.config, KeySet::calibration);
}

void apply_calib_flags(const CalibFlags& f, const CLI::App& cmd, CalibConfig& config,
                       std::vector<CalibSourceSpec>& sources) {
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  Recipe recipe;
  recipe.calibration = config;
  apply_recipe_flags(f.config, cmd, recipe, KeySet::calibration);
  config = recipe.calibration;
  if (given("--field")) config.jsonl_field = f.field;
  if (given("--calib") || given("--calib-ids")) {
    sources.clear();
    for (const auto& spec : f.calib) sources.push_back(parse_calib_spec(spec));
    if (!f.calib_ids.empty())
      sources.push_back({std::filesystem::path(f.calib_ids).stem().string(), f.calib_ids, 1.0});
  }
}

}  // namespace ptq::cli
