// ptq calibrate --model PATH (--calib NAME=PATH[:WEIGHT] ... | --calib-ids FILE) --out FILE.h5
#include <cstdio>

#include "calibrate/model.hpp"
#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "io/output_path.hpp"
#include "pipeline/cli/calib_flags.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/cli/device_flag.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/quantize/quantize_run.hpp"

namespace ptq::cli {

namespace {

struct CalibrateFlags {
  std::string model, out, device = "cpu";
  CalibFlags calib;
  int threads = 0, batch_windows = 16;
};

void run(const CalibrateFlags& f, const CLI::App& cmd) {
  CalibConfig config;
  std::vector<CalibSourceSpec> sources;
  apply_calib_flags(f.calib, cmd, config, sources);
  config.validate();
  if (sources.empty())
    throw input_error("ptq calibrate", "calibration data (--calib NAME=PATH[:WEIGHT] or --calib-ids FILE)", "none");
  if (f.batch_windows < 1) throw input_error("--batch-windows", "at least 1", std::to_string(f.batch_windows));
  const auto out = check_output_path(f.out, OutputKind::file, "--out");
  if (std::filesystem::symlink_status(out).type() != std::filesystem::file_type::not_found)
    throw input_error("--out " + f.out, "a new file", "an existing path");
  ThreadScope threads(f.threads);
  const DeviceUse device(f.device);
  const Model model = Model::open(f.model);
  const CalibrationSet calibration = load_calibration(f.model, sources, config);
  std::fprintf(stderr, "calibration: %zu windows of %d tokens\n", calibration.windows.size(), config.seqlen);
  const QuantizeProgress progress{[](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
  collect_calibration_stats(model, calibration, f.batch_windows, f.out, progress,
                            f.calib.window_record());
  std::fprintf(stderr, "wrote %s\n", f.out.c_str());
}

}  // namespace

void add_calibrate(CLI::App& app) {
  auto flags = std::make_shared<CalibrateFlags>();
  auto* cmd = app.add_subcommand("calibrate",
                                 "Statistics of every Linear input of the float model, per calibration source (HDF5)");
  auto& f = *flags;
  cmd->add_option("--model", f.model, "Hugging Face checkpoint folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", f.out, "Output statistics file (.h5), must not exist")->required();
  add_calib_flags(*cmd, f.calib);
  cmd->add_option("--threads", f.threads, "Threads (0 = all cores)");
  add_device_flag(*cmd, f.device);
  cmd->add_option("--batch-windows", f.batch_windows, "Calibration windows per block pass");
  cmd->callback([flags, cmd] { run(*flags, *cmd); });
}

}  // namespace ptq::cli
