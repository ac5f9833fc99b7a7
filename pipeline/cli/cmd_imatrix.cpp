// ptq imatrix --stats FILE.h5 [--mix NAME=WEIGHT ...] --out FILE.gguf: `ptq
// calibrate`'s statistics (of one mix of its sources) as llama.cpp's GGUF
// importance matrix, for `llama-quantize --imatrix` (pipeline/quantize/imatrix_export.hpp).
#include <cstdio>

#include "io/imatrix.hpp"
#include "io/output_path.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/quantize/imatrix_export.hpp"
#include "pipeline/quantize/quantize_from_stats.hpp"

namespace ptq::cli {
namespace {

struct ImatrixFlags {
  std::string stats, out;
  std::vector<std::string> mix;
};

void run(const ImatrixFlags& f) {
  check_output_path(f.out, OutputKind::file, "--out");
  std::vector<MixWeight> mix;
  for (const std::string& spec : f.mix) mix.push_back(parse_mix_spec(spec));
  const CalibrationStats stats = load_calibration_stats(f.stats);
  const std::vector<double> weights = resolve_mix(stats.info, mix, f.stats);
  const Imatrix imatrix = calibration_imatrix(stats, weights);
  write_imatrix(f.out, imatrix);
  std::fprintf(stderr, "wrote %s (%zu tensors)\n", f.out.c_str(), imatrix.entries.size());
}

}  // namespace

void add_imatrix(CLI::App& app) {
  auto flags = std::make_shared<ImatrixFlags>();
  auto* cmd = app.add_subcommand(
      "imatrix", "llama.cpp importance matrix (GGUF) from `ptq calibrate` statistics");
  cmd->add_option("--stats", flags->stats, "Statistics file of `ptq calibrate` (.h5)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--mix", flags->mix,
                  "Source weight NAME=WEIGHT (repeatable; default: the file's weights)");
  cmd->add_option("--out", flags->out, "Output imatrix (.gguf)")->required();
  cmd->callback([flags] { run(*flags); });
}

}  // namespace ptq::cli
