#pragma once
// What an output was made from, recorded the same way in every HDF5 output
// (quantized.h5, calibration statistics): the model's content hash and the
// calibration windows with their sources.
//   <group> attrs: samples, seqlen, seed
//   <group>/sources/<name> attrs: path, content_hash, weight, windows
//   <group>/window_ids int32 [windows, seqlen]   <group>/window_source int32 [windows]
//   <group>/window_start int64 [windows]
#include <filesystem>
#include <string>

#include "io/hdf5.hpp"
#include "pipeline/recipe/calib_data.hpp"

namespace ptq {

// Hash of the model's .safetensors files (sorted by name).
std::string model_hash(const std::filesystem::path& model);

void write_calibration_record(H5Writer& out, const std::string& group, const CalibrationSet& set);

}  // namespace ptq
