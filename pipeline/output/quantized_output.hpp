#pragma once
// The output folder of `ptq quantize`, ready for Hugging Face transformers:
//   config.json, tokenizer and generation files   copied from the source
//   model.safetensors (or shards + index)          dequantized Linears as float16,
//                                                  every other tensor as in the source
//   quantized.h5                                   integer codes, scales, zeros, g_idx,
//                                                  per-layer errors, recipe, calibration
//                                                  window and data hashes (the windows'
//                                                  tokens only when asked: provenance.hpp)
//   README.md                                      model card (recipe, data, errors)
//   run.json                                       timings, threads and device of this run
// Everything but run.json is byte-identical for the same inputs, recipe and seed.
// The folder is assembled under a hidden staging name beside it and renamed
// when complete (io/output_path.hpp: never over a symlink or special file).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/provenance.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// `ptq export`: the source is an earlier run's folder; its tensors (packed
// Linears dequantized) and the provenance its record names.
struct ExportedRun {
  const Checkpoint* tensors = nullptr;
  std::string source_model, source_model_hash;
};

struct OutputOptions {
  std::uint64_t max_shard_bytes = std::uint64_t{4} << 30;  // split safetensors above this
  std::optional<ExportedRun> exported;
  // What quantized.h5 keeps of the calibration windows (provenance.hpp).
  WindowRecord calibration_windows = WindowRecord::hashes;
};

// Returns warnings found while writing (e.g. float16 overflow of dequantized weights).
std::vector<std::string> write_quantized_model(
    const std::filesystem::path& source_model, const std::filesystem::path& out_dir,
    const Recipe& recipe, const CalibrationSet* calibration, const QuantizedLinears& linears,
    const RunInfo& run, const OutputOptions& options = {}, const ModelExtras& extras = {});

}  // namespace ptq
