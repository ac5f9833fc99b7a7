#include "algorithms/gptq.hpp"

#include <lapacke.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "algorithms/backend.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"

namespace ptq {

void GptqConfig::validate() const {
  spec.validate();
  if (!(damp > 0)) {
    throw input_error("GptqConfig.damp", "a positive fraction", std::to_string(damp));
  }
  if (block_size < 1) {
    throw input_error("GptqConfig.block_size", "a positive number of columns",
                      std::to_string(block_size));
  }
  if (group_grids == GroupGrids::Static && spec.granularity != Granularity::Group) {
    throw input_error("GptqConfig.group_grids", "Dynamic unless the granularity is Group",
                      "Static");
  }
  require_clip_applies(clip, spec, "GptqConfig.clip");
  if (max_damping_retries < 0) {
    throw input_error("GptqConfig.max_damping_retries", ">= 0",
                      std::to_string(max_damping_retries));
  }
  if (rows_per_task < 1) {
    throw input_error("GptqConfig.rows_per_task", ">= 1", std::to_string(rows_per_task));
  }
}

namespace {

template <class T>
using ColMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using Column = Eigen::Array<T, Eigen::Dynamic, 1>;

std::vector<Eigen::Index> column_order(const Eigen::VectorXd& diag, ColumnOrder order) {
  std::vector<Eigen::Index> perm(diag.size());
  std::iota(perm.begin(), perm.end(), Eigen::Index{0});
  if (order == ColumnOrder::ActivationOrder) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return diag[a] > diag[b]; });
  }
  return perm;
}

// a's lower triangle becomes L^-1, a = L L^T, on the active backend or with LAPACK.
bool lower_cholesky_inverse(Eigen::MatrixXd& a) {
  if (MatrixBackend* backend = active_backend()) return backend->lower_cholesky_inverse(a);
  const auto n = static_cast<lapack_int>(a.rows());
  // The _work variants skip LAPACKE's NaN scans; a NaN fails a pivot or the final check.
  return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, a.data(), n) == 0 &&
         LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', n, a.data(), n) == 0;
}

// The upper U with U^T U = A^-1 (A symmetric positive definite), which the
// reference gets as cholesky -> cholesky_inverse -> cholesky(upper): three
// O(n^3) steps. With J the reversal permutation, J A J = M M^T (M lower) gives
// A = R R^T with R = J M J upper, so A^-1 = (R^-1)^T R^-1 and, R^-1 being upper
// with a positive diagonal, U = R^-1 = J M^-1 J: one Cholesky and one
// triangular inverse. `reversed` holds J A J on entry and is overwritten.
// False when A is not (numerically) positive definite.
bool inverse_upper_cholesky(Eigen::MatrixXd& reversed, Eigen::MatrixXd& U) {
  if (!lower_cholesky_inverse(reversed)) return false;
  reversed.triangularView<Eigen::StrictlyUpper>().setZero();
  reversed.reverseInPlace();  // no second n x n matrix
  U = std::move(reversed);
  return U.allFinite();
}

}  // namespace

GptqHessian prepare_hessian(const Eigen::MatrixXd& H, const GptqConfig& config) {
  config.validate();
  use_single_threaded_blas();  // multithreaded dpotrf/dtrtri would vary with the thread count
  if (H.rows() != H.cols()) {
    throw input_error("prepare_hessian: H", "a square matrix",
                      "[" + std::to_string(H.rows()) + ", " + std::to_string(H.cols()) + "]");
  }
  if (!H.allFinite())
    throw input_error("GPTQ Hessian (2 X^T X of the Linear's inputs)", "finite values",
                      "NaN or infinity: the calibration activations overflowed");
  GptqHessian f;
  const Eigen::Index n = H.rows();
  Eigen::VectorXd diag = H.diagonal();
  f.diag = diag;
  f.dead.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    f.dead[i] = diag[i] == 0;
    if (f.dead[i]) diag[i] = 1;
  }
  f.order = column_order(diag, config.order);
  f.damping = config.damp * diag.mean();
  for (f.damping_retries = 0;; ++f.damping_retries, f.damping *= 10) {
    // H in quantization order, reversed (see inverse_upper_cholesky), built
    // anew per attempt: one more n x n matrix beside H, not two.
    Eigen::MatrixXd A(n, n);
    for (Eigen::Index j = 0; j < n; ++j) {
      for (Eigen::Index i = 0; i < n; ++i) A(i, j) = H(f.order[n - 1 - i], f.order[n - 1 - j]);
      A(j, j) = diag[f.order[n - 1 - j]] + f.damping;  // dead columns get H_ii = 1
    }
    const bool ok = inverse_upper_cholesky(A, f.U);
    f.status = ok ? GptqStatus::Ok : GptqStatus::CholeskyFailed;
    if (ok || f.damping_retries == config.max_damping_retries) return f;
  }
}

namespace {

// Everything the row tasks share (read-only), for working precision T.
template <class T>
struct Plan {
  const GptqConfig& config;
  const GptqHessian& hessian;
  const ColMatrix<T>& U;            // hessian.U in T (factor_in)
  GridTable<T> fixed;               // Tensor/Channel grids (original W) or static groups
  std::vector<std::int32_t> g_idx;  // by original column
  // Clip importance d_c (empty = uniform) by original column and in quantization order.
  Eigen::Matrix<T, Eigen::Dynamic, 1> importance, ordered_importance;
  LevelGrid* levels = nullptr;  // gptq_quantize_levels: round onto these instead
};

// hessian.U in working precision T: the factor itself in double, no second
// n x n matrix; a float copy in `converted` otherwise.
template <class T>
const ColMatrix<T>& factor_in(const GptqHessian& hessian, ColMatrix<T>& converted) {
  if constexpr (std::is_same_v<T, double>) {
    return hessian.U;
  } else {
    converted = hessian.U.template cast<T>();
    return converted;
  }
}

template <class T>
void set_importance(Plan<T>& plan) {
  if (plan.config.clip.weighting != ClipWeighting::Hessian) return;
  plan.importance = plan.hessian.diag.template cast<T>();
  plan.ordered_importance.resize(plan.importance.size());
  for (Eigen::Index j = 0; j < plan.importance.size(); ++j)
    plan.ordered_importance[j] = plan.importance[plan.hessian.order[j]];
}

// The column loop's state for all rows; row tasks touch disjoint rows.
template <class T>
struct LoopState {
  ColMatrix<T> W;         // [out, in] in quantization order, updated block by block
  ColMatrix<T> W1;        // the current block's columns, updated column by column
  ColMatrix<T> err;       // the current block's (w - q) / d
  Column<T> scale, zero;  // each row's current grid
  Column<double> loss;    // per row
  GridTable<T> grids;     // [out, n_groups]: the grids used, dynamic ones written as found
  CodeMatrix& codes;      // [out, in], original column order
};

// Sets the grids of rows [r0, r0 + rows) for quantized column j.
template <class T>
void select_grids(const Plan<T>& plan, LoopState<T>& s, Eigen::Index r0, Eigen::Index rows,
                  Eigen::Index j) {
  const QuantSpec& spec = plan.config.spec;
  const bool dynamic_groups =
      spec.granularity == Granularity::Group && plan.config.group_grids == GroupGrids::Dynamic;
  if (!dynamic_groups) {
    const Eigen::Index group = plan.g_idx[plan.hessian.order[j]];
    s.scale.segment(r0, rows) = plan.fixed.scales.col(group).segment(r0, rows);
    s.zero.segment(r0, rows) = plan.fixed.zeros.col(group).segment(r0, rows);
    return;
  }
  if (j % spec.group_size != 0) return;
  // Reference quirk kept on purpose: the group's range is read from W, which
  // lacks the current block's in-block updates (they live in W1).
  const Eigen::Index group = j / spec.group_size;
  const Eigen::Index width = std::min<Eigen::Index>(spec.group_size, s.W.cols() - j);
  const auto part = s.W.block(r0, j, rows, width);
  const auto& d = plan.ordered_importance;
  const auto importance = d.size() == 0 ? d.segment(0, 0) : d.segment(j, width);
  for (Eigen::Index r = 0; r < rows; ++r) {
    const auto g = clipped_grid<T>(part.row(r), importance, spec, plan.config.clip);
    s.scale[r0 + r] = s.grids.scales(r0 + r, group) = g.scale;
    s.zero[r0 + r] = s.grids.zeros(r0 + r, group) = g.zero;
  }
}

// Quantizes block column i (quantized column i1 + i) of rows [r0, r0 + rows):
// writes the codes and err = (w - q) / d, and adds err^2 / 2 to the loss.
template <class T>
void quantize_column(const Plan<T>& plan, LoopState<T>& s, Eigen::Index r0, Eigen::Index rows,
                     Eigen::Index i1, Eigen::Index i) {
  const auto maxq = static_cast<T>(plan.config.spec.maxq());
  const auto w = s.W1.col(i).segment(r0, rows).array();
  const auto scale = s.scale.segment(r0, rows);
  const auto zero = s.zero.segment(r0, rows);
  // quantize_code / dequantize_code, vectorized: rint rounds half to even.
  const Column<T> x = w / scale;
  const Column<T> rounded = (zero.rint() == zero).select(x.rint() + zero, (x + zero).rint());
  const Column<T> code = (scale == T(0)).select(zero, rounded).max(T(0)).min(maxq);
  const Column<T> err = (w - scale * (code - zero)) / plan.U(i1 + i, i1 + i);
  s.err.col(i).segment(r0, rows) = err.matrix();
  s.loss.segment(r0, rows) += err.template cast<double>().square() / 2;
  const Eigen::Index column = plan.hessian.order[i1 + i];
  for (Eigen::Index r = 0; r < rows; ++r)
    s.codes(r0 + r, column) = static_cast<std::uint8_t>(code[r]);
}

// Columns per sub-block inside a lazy block: rank-1 updates stay inside a
// sub-block and a small GEMM carries each sub-block's error to the rest of the
// block. Same arithmetic as the reference up to summation order. Eigen sends
// these products to OpenBLAS, single-threaded by policy (parallel_gemm.hpp).
constexpr Eigen::Index kSubBlock = 16;

// The block [i1, i1 + count) for rows [r0, r0 + rows): the reference's inner loop.
// The index of the level nearest x in ascending `levels`.
template <class T>
int nearest_level(const LevelGrid& g, T x) {
  const auto n = static_cast<int>(g.levels.size());
  if (g.consecutive) {
    const T k = std::nearbyint(x) - static_cast<T>(g.levels.front());
    return static_cast<int>(std::clamp(k, T(0), static_cast<T>(n - 1)));
  }
  const auto above = std::upper_bound(g.levels.begin(), g.levels.end(), x,
                                      [](T v, float level) { return v < static_cast<T>(level); });
  const auto k = static_cast<int>(above - g.levels.begin());
  if (k == 0) return 0;
  if (k == n) return n - 1;
  return x - static_cast<T>(g.levels[k - 1]) <= static_cast<T>(g.levels[k]) - x ? k - 1 : k;
}

// quantize_column for a LevelGrid: each weight to its cell's nearest level.
template <class T>
void quantize_level_column(const Plan<T>& plan, LoopState<T>& s, Eigen::Index r0, Eigen::Index rows,
                           Eigen::Index i1, Eigen::Index i) {
  const LevelGrid& g = *plan.levels;
  const Eigen::Index column = plan.hessian.order[i1 + i];
  const Eigen::Index cell = column / g.cell_width;
  const auto nearest_zero = static_cast<int>(
      std::min_element(g.levels.begin(), g.levels.end(),
                       [](float a, float b) { return std::abs(a) < std::abs(b); }) -
      g.levels.begin());
  for (Eigen::Index r = r0; r < r0 + rows; ++r) {
    const T w = s.W1(r, i);
    const auto scale = static_cast<T>(g.scale(r, cell));
    const auto offset = static_cast<T>(g.offset(r, cell));
    const int k = scale == T(0) ? nearest_zero : nearest_level(g, (w - offset) / scale);
    const T err = (w - (scale * static_cast<T>(g.levels[k]) + offset)) / plan.U(i1 + i, i1 + i);
    s.err(r, i) = err;
    s.loss[r] += static_cast<double>(err) * static_cast<double>(err) / 2;
    s.codes(r, column) = static_cast<std::uint8_t>(k);
  }
}

// Calls the LevelGrid's fit for rows [r0, r0 + rows) when block column i (a
// multiple of kSubBlock) starts a fit: at the start of a sub-block every later
// column of W1, and at the start of a lazy block every later column of W, has
// all earlier columns' error feedback.
template <class T>
void fit_levels(const Plan<T>& plan, LoopState<T>& s, Eigen::Index i1, Eigen::Index count,
                Eigen::Index i, Eigen::Index r0, Eigen::Index rows) {
  LevelGrid& g = *plan.levels;
  if (!g.fit || (i1 + i) % g.fit_width != 0) return;
  const Eigen::Index width = std::min<Eigen::Index>(g.fit_width, s.W.cols() - i1 - i);
  MatrixRM part(rows, width);
  for (Eigen::Index c = 0; c < width; ++c) {
    part.col(c) = (i + c < count ? s.W1.col(i + c) : s.W.col(i1 + i + c))
                      .segment(r0, rows)
                      .template cast<float>();
  }
  g.fit(r0, i1 + i, part, g);
}

template <class T>
void quantize_block_rows(const Plan<T>& plan, LoopState<T>& s, Eigen::Index i1, Eigen::Index count,
                         Eigen::Index r0, Eigen::Index rows) {
  const ColMatrix<T>& U = plan.U;
  auto W1 = s.W1.middleRows(r0, rows);
  const auto err = s.err.middleRows(r0, rows);
  for (Eigen::Index b1 = 0; b1 < count; b1 += kSubBlock) {
    const Eigen::Index b2 = std::min(b1 + kSubBlock, count);
    if (plan.levels != nullptr) fit_levels(plan, s, i1, count, b1, r0, rows);
    for (Eigen::Index i = b1; i < b2; ++i) {
      if (plan.levels != nullptr) {
        quantize_level_column(plan, s, r0, rows, i1, i);
      } else {
        select_grids(plan, s, r0, rows, i1 + i);
        quantize_column(plan, s, r0, rows, i1, i);
      }
      for (Eigen::Index k = i + 1; k < b2; ++k) W1.col(k) -= U(i1 + i, i1 + k) * err.col(i);
    }
    W1.rightCols(count - b2).noalias() -=
        err.middleCols(b1, b2 - b1) * U.block(i1 + b1, i1 + b2, b2 - b1, count - b2);
  }
}

std::vector<std::int32_t> group_index(const QuantSpec& spec, const GptqConfig& config,
                                      const std::vector<Eigen::Index>& order) {
  std::vector<std::int32_t> g_idx(order.size(), 0);
  if (spec.granularity != Granularity::Group) return g_idx;
  for (std::size_t j = 0; j < order.size(); ++j) {
    const auto column = config.group_grids == GroupGrids::Dynamic ? j : order[j];
    g_idx[order[j]] = static_cast<std::int32_t>(column / spec.group_size);
  }
  return g_idx;
}

// Puts W's column order[j] at position j, in place, one cycle of the
// permutation at a time: no second [out, in] matrix (350 MB at 7B's MLP width).
template <class T>
void to_column_order(ColMatrix<T>& W, const std::vector<Eigen::Index>& order) {
  std::vector<char> placed(order.size(), 0);
  std::vector<T> scratch(static_cast<std::size_t>(W.rows()));
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> first(scratch.data(), W.rows());
  for (Eigen::Index start = 0; start < W.cols(); ++start) {
    if (placed[start]) continue;
    first = W.col(start);
    Eigen::Index j = start;
    for (; order[j] != start; j = order[j]) {
      W.col(j) = W.col(order[j]);
      placed[j] = 1;
    }
    W.col(j) = first;
    placed[j] = 1;
  }
}

// W in T with dead columns zeroed, and the grids fixed up front.
template <class T>
ColMatrix<T> prepare_weights(const MatrixRM& W, Plan<T>& plan) {
  const QuantSpec& spec = plan.config.spec;
  ColMatrix<T> Wt = W.cast<T>();
  const bool uniform = plan.levels == nullptr;
  // As in the reference, per-tensor/channel grids see W before dead columns are zeroed.
  if (uniform && spec.granularity != Granularity::Group)
    plan.fixed = fit_clipped_grids(Wt, spec, plan.config.clip, plan.importance);
  for (Eigen::Index c = 0; c < W.cols(); ++c) {
    if (plan.hessian.dead[c]) Wt.col(c).setZero();
  }
  if (uniform && plan.config.group_grids == GroupGrids::Static)
    plan.fixed = fit_clipped_grids(Wt, spec, plan.config.clip, plan.importance);
  to_column_order(Wt, plan.hessian.order);
  return Wt;
}

// The column loop over every lazy block of s.W, rows in fixed chunks.
template <class T>
void run_columns(const Plan<T>& plan, LoopState<T>& s) {
  const GptqConfig& config = plan.config;
  const Eigen::Index out = s.W.rows(), n = s.W.cols();
  const Eigen::Index step = config.rows_per_task;
  const Eigen::Index tasks = (out + step - 1) / step;
  for (Eigen::Index i1 = 0; i1 < n; i1 += config.block_size) {
    const Eigen::Index count = std::min<Eigen::Index>(config.block_size, n - i1);
    s.W1 = s.W.middleCols(i1, count);
    s.err.resize(out, count);
    // Rows are independent given U: each fixed row chunk quantizes the block
    // and carries its error to the columns right of it (single-threaded BLAS),
    // so results are identical for any thread count.
    tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, tasks, 1), [&](const auto& range) {
      for (Eigen::Index t = range.begin(); t < range.end(); ++t) {
        const Eigen::Index r0 = t * step, rows = std::min(step, out - r0);
        quantize_block_rows(plan, s, i1, count, r0, rows);
        s.W.block(r0, i1 + count, rows, n - i1 - count).noalias() -=
            s.err.middleRows(r0, rows) * plan.U.block(i1, i1 + count, count, n - i1 - count);
      }
    });
    if (config.progress) config.progress(i1 + count, n);
  }
}

template <class T>
GptqResult run_gptq(const MatrixRM& W, const GptqHessian& hessian, const GptqConfig& config) {
  use_single_threaded_blas();
  const QuantSpec& spec = config.spec;
  ColMatrix<T> converted;
  Plan<T> plan{config,
               hessian,
               factor_in(hessian, converted),
               {},
               group_index(spec, config, hessian.order),
               {},
               {},
               nullptr};
  set_importance(plan);
  GptqResult result;
  result.quantized = {spec, CodeMatrix(W.rows(), W.cols()), {}, {}, plan.g_idx};
  const Eigen::Index out = W.rows(), n = W.cols();
  LoopState<T> s{prepare_weights(W, plan),
                 {},
                 {},
                 Column<T>(out),
                 Column<T>(out),
                 Column<double>::Zero(out),
                 plan.fixed,
                 result.quantized.codes};
  if (spec.granularity == Granularity::Group && config.group_grids == GroupGrids::Dynamic) {
    s.grids.scales.resize(out, spec.groups_per_row(static_cast<int>(n)));
    s.grids.zeros.resize(out, spec.groups_per_row(static_cast<int>(n)));
  }
  run_columns(plan, s);
  result.quantized.scales = s.grids.scales.template cast<float>();
  result.quantized.zeros = s.grids.zeros.template cast<float>();
  result.loss = s.loss.sum();  // fixed order
  return result;
}

template <class T>
LevelGptqResult run_gptq_levels(const MatrixRM& W, const GptqHessian& hessian,
                                const GptqConfig& config, LevelGrid& grid) {
  use_single_threaded_blas();
  ColMatrix<T> converted;
  Plan<T> plan{config, hessian, factor_in(hessian, converted), {}, {}, {}, {}, &grid};
  LevelGptqResult result;
  result.codes.resize(W.rows(), W.cols());
  LoopState<T> s{prepare_weights(W, plan),       {}, {},          {}, {},
                 Column<double>::Zero(W.rows()), {}, result.codes};
  run_columns(plan, s);
  result.loss = s.loss.sum();
  return result;
}

void require_level_grid(const LevelGrid& g, const MatrixRM& W, const GptqConfig& config) {
  const auto cells = W.cols() / std::max(g.cell_width, 1);
  if (g.levels.empty() || g.levels.size() > 256 ||
      !std::is_sorted(g.levels.begin(), g.levels.end()))
    throw input_error("LevelGrid.levels", "1 to 256 ascending values",
                      std::to_string(g.levels.size()) + " values");
  if (g.cell_width < 1 || W.cols() % g.cell_width != 0 || g.scale.rows() != W.rows() ||
      g.scale.cols() != cells || g.offset.rows() != W.rows() || g.offset.cols() != cells)
    throw input_error("LevelGrid", "cells dividing W's columns, scale and offset [out, cells]",
                      "another shape");
  if (!g.fit) return;
  const bool aligned = g.fit_width % config.block_size == 0 || config.block_size % g.fit_width == 0;
  if (g.fit_width % kSubBlock != 0 || !aligned || config.order != ColumnOrder::Natural)
    throw input_error("LevelGrid.fit_width",
                      "a multiple of 16 dividing or divided by the block size, natural order",
                      std::to_string(g.fit_width));
}

void require_hessian_shape(Eigen::Index rows, Eigen::Index cols, const MatrixRM& W) {
  if (rows == W.cols() && cols == W.cols()) return;
  const std::string n = std::to_string(W.cols());
  throw input_error("gptq_quantize: H", "[" + n + ", " + n + "] (W's input columns)",
                    "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

}  // namespace

GptqResult gptq_quantize(const MatrixRM& W, const GptqHessian& hessian, const GptqConfig& config) {
  config.validate();
  require_weights(W, "gptq_quantize: W");
  const auto n = static_cast<Eigen::Index>(hessian.dead.size());  // U is empty on failure
  require_hessian_shape(n, n, W);
  GptqResult result;
  if (hessian.status != GptqStatus::Ok) {
    result.quantized = rtn_quantize(W, config.spec, config.clip);
  } else if (config.precision == Precision::Float32) {
    result = run_gptq<float>(W, hessian, config);
  } else {
    result = run_gptq<double>(W, hessian, config);
  }
  result.status = hessian.status;
  result.damping = hessian.damping;
  result.damping_retries = hessian.damping_retries;
  result.weight_mse = weight_mse(W, result.quantized.dequantize());
  return result;
}

LevelGptqResult gptq_quantize_levels(const MatrixRM& W, const GptqHessian& hessian,
                                     const GptqConfig& config, LevelGrid& grid) {
  config.validate();
  require_weights(W, "gptq_quantize_levels: W");
  const auto n = static_cast<Eigen::Index>(hessian.dead.size());
  require_hessian_shape(n, n, W);
  require_level_grid(grid, W, config);
  PTQ_ASSERT(hessian.status == GptqStatus::Ok);
  if (config.precision == Precision::Float32)
    return run_gptq_levels<float>(W, hessian, config, grid);
  return run_gptq_levels<double>(W, hessian, config, grid);
}

GptqResult gptq_quantize(const MatrixRM& W, const Eigen::MatrixXd& H, const GptqConfig& config) {
  require_hessian_shape(H.rows(), H.cols(), W);
  return gptq_quantize(W, prepare_hessian(H, config), config);
}

MatrixRM float_output_correction(const Eigen::MatrixXd& hessian, const Eigen::MatrixXd& cross,
                                 double damp) {
  PTQ_ASSERT(hessian.rows() == hessian.cols() && cross.rows() == hessian.rows() &&
             cross.cols() == hessian.cols());
  Eigen::MatrixXd damped = hessian;
  const double mean_diag = hessian.diagonal().mean();
  damped.diagonal().array() += damp * (mean_diag > 0 ? mean_diag : 1.0);
  // H + lambda I is positive definite: H is a Gram matrix and lambda > 0.
  const Eigen::LLT<Eigen::MatrixXd> factor(damped);
  PTQ_ASSERT(factor.info() == Eigen::Success);
  return factor.solve(cross).cast<float>();
}

MatrixRM float_output_target(const MatrixRM& w, const MatrixRM& correction) {
  PTQ_ASSERT(correction.rows() == w.cols() && correction.cols() == w.cols());
  // H symmetric, so W D^T (H + lambda I)^-1 = W M^T.
  MatrixRM target = w;
  parallel_gemm(w, correction, GemmOp::transposed, target, GemmOutput::accumulate);
  return target;
}

}  // namespace ptq
