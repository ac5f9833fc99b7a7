#pragma once
// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"), with the semantics of the reference
// GPTQ.fasterquant (IST-DASLab/gptq): columns are quantized left to right and
// each column's rounding error is spread over the columns not yet quantized
// through the upper Cholesky factor of H^-1, in lazy blocks.
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <vector>

#include "algorithms/clip.hpp"
#include "algorithms/matrix.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

// In which order columns are quantized.
enum class ColumnOrder {
  Natural,  // 0, 1, 2, ...
  // Descending diag(H) ("act-order"). Ties go by ascending index; the
  // reference's torch.argsort is not stable, so it may order ties differently.
  ActivationOrder
};

// Where a group's grid comes from (Granularity::Group only).
enum class GroupGrids {
  Dynamic,  // from the error-updated weights when the group's first column comes up
  Static    // from the original weights, up front, by original column index
};

// Working precision of the column loop and block updates.
enum class Precision { Float32, Float64 };

struct GptqConfig {
  QuantSpec spec;
  double damp = 0.01;    // damping = damp * mean(diag H) added to diag H (reference percdamp)
  int block_size = 128;  // columns per lazy block (reference blocksize)
  ColumnOrder order = ColumnOrder::Natural;
  GroupGrids group_grids = GroupGrids::Dynamic;
  // How each grid's range is chosen: for dynamic groups from the error-updated
  // weights of the group, otherwise from the original weights. Hessian
  // weighting uses diag(H).
  ClipConfig clip;
  // Each failed Cholesky multiplies the damping by 10 and retries, at most this often.
  int max_damping_retries = 6;
  // Column loop and block updates in Float32, like the reference's torch math.
  // The factor of H^-1 is always computed in double (the reference uses float32).
  Precision precision = Precision::Float32;
  // Rows per parallel task: fixed chunks, so the result does not depend on the thread count.
  int rows_per_task = 64;
  // Optional; called on the calling thread after each block of columns.
  std::function<void(std::int64_t columns_done, std::int64_t columns_total)> progress;

  void validate() const;  // InputError naming the field
};

enum class GptqStatus {
  Ok,
  // H + damping stayed not positive definite after every retry; `quantized` then
  // holds the RTN result so callers always get a usable matrix.
  CholeskyFailed
};

struct GptqResult {
  QuantizedMatrix quantized;  // original column order; g_idx maps columns to groups
  GptqStatus status = GptqStatus::Ok;
  double loss = 0;        // sum over weights of (w - q)^2 / d^2 / 2, d = diag of the factor
  double weight_mse = 0;  // mean (W - W')^2 against the W given (dead columns included)
  double damping = 0;     // absolute value added to diag(H), after retries
  int damping_retries = 0;
};

// GPTAQ's target (Li et al. 2025, "GPTAQ: Efficient Finetuning-Free
// Quantization for Asymmetric Calibration"): the weights V whose outputs on the
// quantized model's inputs X~ best reproduce the float model's outputs X W^T,
// argmin_V |X W^T - X~ V^T|^2 = W + W D^T (H + lambda I)^-1 with H = c X~^T X~
// (GPTQ's Hessian), D = c X~^T (X - X~) (the same scale c), the damping lambda =
// damp * mean(diag H) acting on the correction only (V = W when X = X~). GPTQ
// of V under H then minimizes that output error over the grid (the
// least-squares residual is orthogonal to every V' X~^T).
// float_output_correction is M = (H + lambda I)^-1 D, [in, in], shared by the
// Linears that read one input; float_output_target is V = W + W M^T.
MatrixRM float_output_correction(const Eigen::MatrixXd& hessian, const Eigen::MatrixXd& cross,
                                 double damp);
MatrixRM float_output_target(const MatrixRM& w, const MatrixRM& correction);

// H made ready for the column loop: dead columns found, columns ordered, damped
// and factored. It depends on H and on config.order, damp and
// max_damping_retries only, so layers that read the same input (q, k, v; gate,
// up) can share one.
struct GptqHessian {
  std::vector<Eigen::Index> order;  // order[j]: original index of the j-th quantized column
  std::vector<char> dead;           // per original column: H_ii == 0
  Eigen::VectorXd diag;             // per original column: H_ii (clip importance)
  Eigen::MatrixXd U;   // upper factor, U^T U = (H_ordered + damping I)^-1; empty on failure
  double damping = 0;  // absolute value added to diag(H), after retries
  int damping_retries = 0;
  GptqStatus status = GptqStatus::Ok;
};

// H: [in, in], symmetric (see gptq_quantize). Never throws for a numerical
// failure: the status says whether a factor was found.
GptqHessian prepare_hessian(const Eigen::MatrixXd& H, const GptqConfig& config);

// W: [out, in], row-major float32, non-empty and finite. H: [in, in], symmetric,
// the Hessian proxy of the layer input X [n, in]. Any positive multiple of X^T X
// gives the same quantized weights (up to float rounding); only `loss` scales
// with H. Pass the reference's average H = 2/n X^T X (unnormalised sums work
// as well) to compare losses with the reference. Columns with
// H_ii == 0 never saw a nonzero input: their weights become 0 (reference).
// With ActivationOrder and dynamic groups, group k holds the k-th run of
// group_size columns in quantization order and g_idx[c] says which; with static
// groups g_idx[c] = c / group_size.
// Deterministic: rows are independent given H and each row's arithmetic is the
// same whatever the thread count.
GptqResult gptq_quantize(const MatrixRM& W, const Eigen::MatrixXd& H, const GptqConfig& config);

// The same with H prepared once for several layers (W.cols() == hessian.dead.size()).
GptqResult gptq_quantize(const MatrixRM& W, const GptqHessian& hessian, const GptqConfig& config);

// A grid of levels, one per cell of cell_width consecutive columns of a row:
// weight (r, c) becomes scale(r, k) * levels[code] + offset(r, k), k = c /
// cell_width. ggml's block grids take this form (algorithms/ggml_gptq.hpp):
// non-uniform levels (IQ4_NL), negative scales (Q4_0's d) and offsets (mins).
struct LevelGrid {
  std::vector<float> levels;  // ascending, at most 256
  bool consecutive = false;   // levels[i] == levels[0] + i: codes by rounding, not search
  int cell_width = 32;
  MatrixRM scale, offset;  // [out, in / cell_width]
  // Optional (natural column order only): sets the cells of rows [r0, r0 +
  // part.rows()) covering columns [col0, col0 + fit_width) from `part`, those
  // rows' error-updated weights of those columns, when column col0 comes up.
  // Empty: every cell is set up front. fit_width divides or is a multiple of
  // GptqConfig::block_size and is a multiple of 16.
  int fit_width = 0;
  std::function<void(Eigen::Index r0, Eigen::Index col0, const MatrixRM& part, LevelGrid& grid)>
      fit;
};

struct LevelGptqResult {
  CodeMatrix codes;  // [out, in]: indices into LevelGrid::levels
  double loss = 0;   // as GptqResult::loss
};

// GPTQ's column loop (error feedback through H^-1, config's order, block size,
// precision and row chunks) rounding each weight to its cell's nearest level.
// config.spec, group_grids and clip are not used. A cell whose scale is 0 maps
// every weight to its offset (code: the level nearest 0). Dead columns are
// zeroed first; `grid` is updated in place by its fit. hessian.status must be Ok.
LevelGptqResult gptq_quantize_levels(const MatrixRM& W, const GptqHessian& hessian,
                                     const GptqConfig& config, LevelGrid& grid);

}  // namespace ptq
