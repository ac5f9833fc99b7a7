#pragma once
// `ptq quantize`: block by block, the inputs of block i come from the blocks
// before it, already quantized; inside a block the Linears are quantized in
// true-sequential order (q/k/v, o, gate/up, down), each group's statistics
// gathered with the earlier groups already quantized. Each stage of a block
// runs once over the calibration windows (docs/quantize.md, "Staging").
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/matrix.hpp"
#include "calibrate/tensor_names.hpp"
#include "io/model_config.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

class Model;

struct QuantizeProgress {
  std::function<void(const std::string&)> log;  // one line per event; may be empty
};

// GPTQ's Hessian from an input's mean X^T X: the reference's 2/n X^T X.
Eigen::MatrixXd gptq_hessian(Eigen::MatrixXd mean_xtx);

// Quantizes one Linear, w: [out, in]: RTN, or GPTQ with `hessian` [in, in]
// (null for RTN). Every Linear of `ptq quantize` goes through here.
// With --format gguf, GPTQ rounds onto the ggml grid of the Linear's GGUF type
// (pipeline/output/gguf_linear.hpp). `factor`, when given, is prepare_hessian
// of `hessian` under the recipe's GPTQ config, shared by the Linears reading
// one input; then `hessian` may be null unless the recipe refits scales.
QuantizedLinear quantize_linear(const Recipe& recipe, const ModelConfig& config, int layer,
                                LinearRole role, const MatrixRM& w, const Eigen::MatrixXd* hessian,
                                const GptqHessian* factor = nullptr);

// Recipe target float_outputs (GPTAQ): the mean over an input's tokens of
// X~^T (X - X~), X~ the quantized model's input and X the float model's on the
// same rows, batch by batch; then the correction float_output_target takes.
class FloatOutputCross {
 public:
  using Sums = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  explicit FloatOutputCross(Eigen::Index features);
  // sum += q^T (f - q), float32 products over fixed row chunks summed in double.
  void add(const MatrixRM& quantized, const MatrixRM& float_input);
  static void add_to(Eigen::Ref<Sums> sum, const MatrixRM& quantized, const MatrixRM& float_input);
  // float_output_correction under the input's Hessian (gptq_hessian's scale).
  MatrixRM correction(const Eigen::MatrixXd& hessian, double target_damp) const;
  // The same from sums over `tokens` rows kept elsewhere (the device path's).
  static MatrixRM correction(const Eigen::MatrixXd& hessian, const Eigen::Ref<const Sums>& sums,
                             std::int64_t tokens, double target_damp);

 private:
  Sums sum_;
  std::int64_t tokens_ = 0;
};

// quantize_linear, toward GPTAQ's target W + W M^T when `correction` (M) is
// given; the report's weight MSE is then against w itself.
QuantizedLinear quantize_toward(const Recipe& recipe, const ModelConfig& config, int layer,
                                LinearRole role, const MatrixRM& w, const Eigen::MatrixXd* hessian,
                                const GptqHessian* factor, const MatrixRM* correction);

// GPTQ inside ggml's `grid` (algorithms/ggml_gptq.hpp) with the recipe's
// damping and column order: what --method gptq --format gguf does to each
// Linear. Cholesky failing: ggml's own search weighted by diag H. Fills
// report's damping and GPTQ loss.
GgmlBlocks gguf_gptq(const Recipe& recipe, GgmlGrid grid, const MatrixRM& w,
                     const Eigen::MatrixXd& hessian, LinearReport& report);

// Sets q.report's layer and role (from q), its weight MSE against the float `w`
// and the seconds since t0: what every method reports the same way.
void finish_report(QuantizedLinear& q, const MatrixRM& w, std::chrono::steady_clock::time_point t0);

// One line per quantized Linear (weight MSE, GPTQ loss, seconds).
void log_linear(const QuantizeProgress& progress, const LinearReport& report);

// Whether a block stage's input (attention context, MLP hidden state) is kept
// for all windows between its statistics and its residual add, or recomputed.
enum class CachePolicy { keep, recompute };
struct StageCaches {
  CachePolicy context = CachePolicy::keep;  // o_proj's input, [tokens, heads * head_dim]
  CachePolicy hidden = CachePolicy::keep;   // down_proj's input, [tokens, intermediate]
};

inline constexpr std::uint64_t default_stage_cache_bytes = std::uint64_t{2} << 30;

// float32 bytes of one block input over `tokens` calibration tokens.
std::uint64_t stage_input_bytes(const ModelConfig& config, LinearInput input, std::int64_t tokens);
// Each stage input is kept when it alone fits the budget (they are never held together).
StageCaches stage_caches(const ModelConfig& config, std::int64_t tokens,
                         std::uint64_t budget_bytes);

// Whether a run continues from the checkpoints an interrupted one left.
enum class Resume { no, yes };

struct QuantizeRunOptions {
  int batch_windows = 16;  // calibration windows run through a block stage at once
  // Folder for per-block checkpoints (pipeline/quantize/checkpoints.hpp); empty =
  // none. With Resume::yes, blocks recorded there are loaded instead of recomputed.
  std::filesystem::path checkpoint_dir;
  Resume resume = Resume::no;
  // Folded scales (recipe.folds_scales()): one per layer in order to apply
  // instead of searching (--load-scales), and where the applied ones are
  // recorded. Both may be null.
  const std::vector<BlockScales>* scale_replay = nullptr;
  std::vector<BlockScales>* scale_record = nullptr;
  std::uint64_t cache_budget_bytes = default_stage_cache_bytes;  // see StageCaches
  // The stream's activations (the large part of a checkpoint) are saved once at
  // least this many seconds have passed since they last were (0: after every
  // block); a resume recomputes the blocks after them. Never after the last block.
  double activation_checkpoint_seconds = 0.0;
  void validate() const;
};

// The embeddings of all calibration windows in window order: the residual
// stream [windows * seqlen, hidden] that calibrated methods run block by block.
MatrixRM embed_windows(const Model& model, const CalibrationSet& calibration);

// Quantizes every Linear of every block. `calibration` may be null for RTN.
// With a checkpoint_dir, each finished block's weights stay in its checkpoint
// file (QuantizedLinears::add_stored), not in memory.
QuantizedLinears quantize_blocks(const Model& model, const Recipe& recipe,
                                 const CalibrationSet* calibration,
                                 const QuantizeRunOptions& options,
                                 const QuantizeProgress& progress = {});

}  // namespace ptq
