#pragma once
// Resume checkpoints of `ptq quantize` (--resume), in a folder beside the
// output: block_<i>.h5 (block i's Linears and folded scales, written when the
// block is done) and activations.h5 (the calibration stream x after the last
// saved block, with a fingerprint of the run it belongs to). x, the large part,
// is saved at most every `activation_seconds` and never after the last block;
// a resume recomputes the blocks after it. activations.h5 also holds a checksum
// of x and of every block file it resumes from, so a damaged checkpoint (a bit
// flipped on disk) is refused, never resumed into different output bytes.
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

class Model;

// What a checkpoint must belong to: the model's path, the recipe and the
// calibration windows' ids.
std::string run_fingerprint(const Model& model, const Recipe& recipe,
                            const CalibrationSet* calibration);

// The calibration streams a checkpoint holds: the quantized model's x and, for
// the recipe target float_outputs, the float model's beside it; null when the
// run has none.
struct CheckpointStreams {
  MatrixRM* x = nullptr;
  MatrixRM* float_x = nullptr;
  // Optional: brings *x up to date before it is saved (the GPU path keeps the
  // stream on the device and copies it to *x only then).
  std::function<void()> refresh;
};

class ResumeCheckpoints {
 public:
  ResumeCheckpoints(std::filesystem::path dir, std::string fingerprint, double activation_seconds);

  // Adds the blocks finished before the last saved stream to `done` (their
  // weights left in their block files; their scales into `scales`, when the
  // recipe folds scales and it is not null) and loads the streams. Returns
  // the first layer still to do; InputError when the folder is another run's
  // or a checksum differs.
  int load(const Model& model, const Recipe& recipe, const CheckpointStreams& streams,
           QuantizedLinears& done, std::vector<BlockScales>* scales);

  // Records block `layer` (of `layers`) and, when due, the streams after it.
  void save(int layer, int layers, const std::vector<QuantizedLinear>& block,
            const std::optional<BlockScales>& scales, const CheckpointStreams& streams);

  // Where block `layer`'s Linears are saved (QuantizedLinears::add_stored).
  std::filesystem::path block_file(int layer) const;

 private:
  void save_activations(int layer, const CheckpointStreams& streams) const;

  std::filesystem::path dir_;
  std::string fingerprint_;
  std::vector<std::string> block_hashes_;  // hash_path of each saved block file
  double activation_seconds_;
  std::chrono::steady_clock::time_point activations_saved_;
};

}  // namespace ptq
