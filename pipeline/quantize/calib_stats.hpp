#pragma once
// `ptq calibrate`: statistics of the inputs of every Linear of the FLOAT model,
// block by block, kept per calibration source so that a new mix of the same
// sources needs no new forward pass (mix_stats in calibrate/input_stats.hpp).
//
// File layout (HDF5, byte-deterministic):
//   /  attrs: format "ptq-calibration", format_version, source_model,
//             source_model_hash, sources (names, comma-separated)
//   /calibration                      provenance.hpp: samples, seqlen, seed,
//                                     sources/<name> (path, hash, weight, windows),
//                                     the windows' ids, source and start
//   /layers/<i>/<input>/<source>/     one InputStats; <input> is attention_in,
//                                     attention_out, mlp_in or mlp_hidden (a
//                                     mixture layer has no mlp_hidden of its own)
//   /layers/<i>/experts/<e>/<input>/<source>/  a mixture layer's expert e:
//                                     mlp_in and mlp_hidden over the tokens
//                                     routed to it, mlp_hidden_all over every
//                                     token (ExpertInputStats)
//       attrs: tokens
//       absmax float32 [in]  sum_sq float64 [in]  xtx float64 [in, in]
//       magnitudes int64 [buckets + 1]  (QuantileSketch counts)
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "calibrate/input_stats.hpp"
#include "calibrate/tensor_names.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/provenance.hpp"

namespace ptq {

class Model;

inline constexpr std::int64_t kCalibStatsFormatVersion = 1;

std::string_view linear_input_name(LinearInput input);

// Statistics of one block: [input][source].
using BlockInputStats = std::array<std::vector<InputStats>, all_linear_inputs.size()>;

// One expert of a mixture layer, per source: its gate/up input over the tokens
// routed to it, its down input over those tokens and over every token (every
// token's gate/up input is the layer's mlp_in).
struct ExpertInputStats {
  std::vector<InputStats> mlp_in, mlp_hidden, mlp_hidden_all;  // [source]
};

struct CalibStatsInfo {
  std::string source_model_hash;
  std::vector<std::string> sources;  // names, in CalibrationSet order
  std::vector<double> weights;       // per source, as recorded (1 where the file records none)
  int samples = 0, seqlen = 0;
  std::uint64_t seed = 0;
};

struct CalibrationStats {
  CalibStatsInfo info;
  std::vector<BlockInputStats> layers;  // [layer][input][source]
  std::vector<std::vector<ExpertInputStats>> experts;  // [layer][expert]; empty: dense layer

  const InputStats& at(int layer, LinearInput input, int source) const;
  int source_index(const std::string& name) const;  // InputError if absent
};

// Runs the float model over `calibration` block by block, `batch_windows`
// windows of one source at a time, and writes the statistics to `out` (atomically),
// with the windows recorded as `windows` says (provenance.hpp).
void collect_calibration_stats(const Model& model, const CalibrationSet& calibration,
                               int batch_windows, const std::filesystem::path& out,
                               const QuantizeProgress& progress = {},
                               WindowRecord windows = WindowRecord::hashes);

// InputError naming the file and object on a missing piece or another format version.
CalibrationStats load_calibration_stats(const std::filesystem::path& path);

}  // namespace ptq
