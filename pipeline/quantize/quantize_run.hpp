#pragma once
// The whole `ptq quantize` job as a list of named steps (run_quantize): load
// the model, replay or (inside the drivers) search folded scales, load the
// calibration data, quantize block by block (with resume checkpoints), write
// the output folder. The CLI only fills QuantizeJob.
#include <filesystem>
#include <string>
#include <vector>

#include "pipeline/quantize/quantize_from_stats.hpp"
#include "pipeline/output/quantized_output.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

struct QuantizeJob {
  std::filesystem::path model;
  std::filesystem::path out;
  Recipe recipe;
  int threads = 0;  // 0 = all cores
  Resume resume = Resume::no;
  int batch_windows = 16;
  OutputOptions output;
  std::uint64_t cache_budget_bytes = default_stage_cache_bytes;  // QuantizeRunOptions::cache_budget_bytes
  double checkpoint_seconds = 60.0;  // QuantizeRunOptions::activation_checkpoint_seconds
  // A quantized.h5 whose awq/ group is applied instead of searching (recipe must use AWQ).
  std::filesystem::path load_scales;
  // Non-empty: Hessians from these `ptq calibrate` statistics, mixed by `mix`
  // (pipeline/quantize_from_stats.hpp), instead of a sequential calibration run.
  std::filesystem::path stats;
  std::vector<MixWeight> mix;
};

struct QuantizeEstimate {
  std::uint64_t output_bytes = 0;
  std::uint64_t peak_bytes = 0;       // resident set: allocated_bytes + the mapped checkpoint
  std::uint64_t allocated_bytes = 0;  // anonymous memory (RssAnon)
  std::uint64_t calibration_bytes =
      0;  // of allocated_bytes: activations, stage caches, Hessians (0 for RTN)
  double seconds = 0.0;
  std::uint64_t device_bytes = 0;  // the GPU path's device memory (0: no GPU path)
  int devices = 0;                 // the GPU path's devices
  std::string text() const;
};

// Reads calibration sources (tokenizing text sources with the model's tokenizer).
CalibrationSet load_calibration(const std::filesystem::path& model, std::span<const CalibSourceSpec> sources,
                                const CalibConfig& config);

QuantizeEstimate estimate_quantize(const QuantizeJob& job);

// Returns the warnings written into the output (also logged through `log`).
std::vector<std::string> run_quantize(const QuantizeJob& job, const QuantizeProgress& progress);

}  // namespace ptq
