#pragma once
// What an output was made from, recorded the same way in every HDF5 output
// (quantized.h5, calibration statistics): the model's content hash and the
// calibration windows with their sources.
//   <group> attrs: samples, seqlen, seed
//   <group>/sources/<name> attrs: path, content_hash, weight, windows
//   <group>/window_hash int64 [windows]     FNV-1a 64 of the window's int32 ids
//   <group>/window_source int32 [windows]   <group>/window_start int64 [windows]
//   <group>/window_ids int32 [windows, seqlen]   only with WindowRecord::token_ids
// Outputs are shared, and the windows are the calibration text itself: by
// default a source's path is its file name and the windows are hashes.
#include <filesystem>
#include <string>

#include "io/hdf5.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// Hash of the model's .safetensors files (sorted by name).
std::string model_hash(const std::filesystem::path& model);

// token_ids: the windows' tokens and the sources' full paths, which may name
// or reveal private data (--record-calibration-windows).
enum class WindowRecord { hashes, token_ids };

void write_calibration_record(H5Writer& out, const std::string& group, const CalibrationSet& set,
                              WindowRecord record);

// A recipe as an output records it: with WindowRecord::hashes the calibration
// sources' paths become file names.
Recipe recorded_recipe(const Recipe& recipe, WindowRecord record);

}  // namespace ptq
