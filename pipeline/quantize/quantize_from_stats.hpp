#pragma once
// `ptq quantize --stats FILE [--mix NAME=WEIGHT ...]`: quantization from the
// cached per-source statistics of `ptq calibrate`, with no forward pass. Each
// Linear's GPTQ Hessian is 2 x the mixed mean X^T X of its input (mix_stats).
//
// This is an approximation of the sequential run (docs/calibration.md,
// "Quantizing from cached statistics"): the statistics are of the FLOAT
// model's activations, not of inputs produced by already-quantized earlier
// blocks and groups, and a mix weights each source's per-token average, not
// a count of windows.
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/output/quantized_output.hpp"

namespace ptq {

struct MixWeight {
  std::string source;
  double weight = 0.0;
};

// "NAME=WEIGHT"; InputError naming `spec` otherwise.
MixWeight parse_mix_spec(std::string_view spec);

// Per-source weights in the file's source order: those of `mix` (sources it
// does not name get 0), or the weights recorded in the file when `mix` is
// empty. InputError on unknown or repeated names, negative or non-finite
// weights, or weights that are all zero.
std::vector<double> resolve_mix(const CalibStatsInfo& info, std::span<const MixWeight> mix,
                                const std::filesystem::path& file);

// InputError unless `stats` were collected from `model`: same content hash,
// number of layers and input widths.
void check_stats_fit(const CalibrationStats& stats, const Model& model, const std::filesystem::path& file);

// InputError unless `recipe`'s method needs exactly input statistics (GPTQ).
void check_recipe_for_stats(const Recipe& recipe);

// Every Linear of every block, each input's Hessian mixed from `stats` with
// `weights` (file source order). The recipe is used unchanged.
std::vector<QuantizedLinear> quantize_from_stats(const Model& model, const Recipe& recipe,
                                                 const CalibrationStats& stats, std::span<const double> weights,
                                                 const QuantizeProgress& progress = {});

struct StatsQuantizeResult {
  std::vector<QuantizedLinear> linears;
  StatsMixRecord record;  // for the output's README and run.json
};

// Loads `file`, checks it against `model` and `recipe`, resolves `mix`, quantizes.
StatsQuantizeResult quantize_from_stats_file(const Model& model, const Recipe& recipe,
                                             const std::filesystem::path& file, std::span<const MixWeight> mix,
                                             const QuantizeProgress& progress = {});

}  // namespace ptq
