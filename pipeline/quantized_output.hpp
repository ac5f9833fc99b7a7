#pragma once
// The output folder of `ptq quantize`, ready for Hugging Face transformers:
//   config.json, tokenizer and generation files   copied from the source
//   model.safetensors (or shards + index)          dequantized Linears as float16,
//                                                  every other tensor as in the source
//   quantized.h5                                   integer codes, scales, zeros, g_idx,
//                                                  per-layer errors, recipe, calibration
//                                                  windows and data hashes
//   README.md                                      model card (recipe, data, errors)
//   run.json                                       timings and threads of this run
// Everything but run.json is byte-identical for the same inputs, recipe and seed.
// The folder is assembled under "<out>.partial" and renamed when complete.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "calibrate/act_quant.hpp"
#include "pipeline/awq.hpp"
#include "pipeline/quantize.hpp"

namespace ptq {

// Hessians mixed from cached float statistics (`ptq quantize --stats`)
// instead of a sequential calibration run: an approximation, said so in the
// README and run.json.
struct StatsMixRecord {
  std::filesystem::path file;
  std::vector<std::string> sources;
  std::vector<double> weights;       // per source, as given (not normalised)
  std::vector<std::int64_t> tokens;  // per source, in the file
};

struct RunInfo {
  double seconds = 0.0;
  int threads = 0;
  std::vector<std::string> warnings;
  std::optional<StatsMixRecord> from_stats;
};

// A float tensor of the source that a method rewrites (norms that SmoothQuant or
// AWQ scales fold into); written as float32, since rounding it to float16 would
// undo part of the fold's invariance.
struct ReplacedTensor {
  std::string name;  // checkpoint name
  std::vector<float> values;
};

// What a method changes besides the Linears. `activations` is recorded in
// config.json (and static scales in quantized.h5) so `ptq eval` simulates them.
struct ModelExtras {
  std::vector<ReplacedTensor> tensors;
  std::optional<ActivationQuant> activations;
  // Scales folded in before rounding (recipe.folds_scales(): AWQ's scales and
  // clips, or SmoothQuant's scales), saved under awq/ and replayed by --load-scales.
  std::vector<AwqBlock> awq;
};

struct OutputOptions {
  std::uint64_t max_shard_bytes = std::uint64_t{4} << 30;  // split safetensors above this
};

// Returns warnings found while writing (e.g. float16 overflow of dequantized weights).
std::vector<std::string> write_quantized_model(const std::filesystem::path& source_model,
                                               const std::filesystem::path& out_dir, const Recipe& recipe,
                                               const CalibrationSet* calibration,
                                               const std::vector<QuantizedLinear>& linears,
                                               const RunInfo& run, const OutputOptions& options = {},
                                               const ModelExtras& extras = {});

// InputError unless `out_dir` is absent or an empty folder (checked before a long run).
void check_output_folder(const std::filesystem::path& out_dir);

}  // namespace ptq
