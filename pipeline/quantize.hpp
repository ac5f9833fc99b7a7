#pragma once
// `ptq quantize`: block by block, the inputs of block i come from the blocks
// before it, already quantized; inside a block the Linears are quantized in
// true-sequential order (q/k/v, o, gate/up, down), each group's statistics
// gathered with the earlier groups already quantized.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/nf4.hpp"
#include "algorithms/quantized_matrix.hpp"
#include "calibrate/tensor_names.hpp"
#include "pipeline/calib_data.hpp"
#include "pipeline/recipe.hpp"

namespace ptq {

class Model;

struct LinearReport {
  int layer = 0;
  LinearRole role = LinearRole::q;
  double weight_mse = 0.0;
  double gptq_loss = 0.0;     // 0 for RTN
  double damping = 0.0;       // absolute damping added to diag H (GPTQ)
  int damping_retries = 0;    // Cholesky retries with more damping
  bool cholesky_failed = false;  // fell back to RTN
  double seconds = 0.0;
};

struct QuantizedLinear {
  int layer = 0;
  LinearRole role = LinearRole::q;
  QuantizedMatrix matrix;  // empty when nf4 is set
  LinearReport report;
  std::optional<Nf4Matrix> nf4;  // NF4 codes index a nonuniform table: not a QuantizedMatrix

  MatrixRM dequantize() const { return nf4 ? nf4->dequantize() : matrix.dequantize(); }
};

struct QuantizeProgress {
  std::function<void(const std::string&)> log;  // one line per event; may be empty
};

struct QuantizeRunOptions {
  int batch_windows = 16;  // calibration windows run through a block at once
  // Folder for per-block checkpoints; empty = none. With `resume`, blocks
  // recorded there are loaded instead of recomputed.
  std::filesystem::path checkpoint_dir;
  bool resume = false;
};

// Quantizes every Linear of every block. `calibration` may be null for RTN.
std::vector<QuantizedLinear> quantize_blocks(const Model& model, const Recipe& recipe,
                                             const CalibrationSet* calibration,
                                             const QuantizeRunOptions& options,
                                             const QuantizeProgress& progress = {});

}  // namespace ptq
