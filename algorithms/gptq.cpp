#include "algorithms/gptq.hpp"

#include <lapacke.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"

namespace ptq {

void GptqConfig::validate() const {
  spec.validate();
  if (!(damp > 0))
    throw input_error("GptqConfig.damp", "a positive fraction", std::to_string(damp));
  if (block_size < 1) {
    throw input_error("GptqConfig.block_size", "a positive number of columns",
                      std::to_string(block_size));
  }
  if (group_grids == GroupGrids::Static && spec.granularity != Granularity::Group) {
    throw input_error("GptqConfig.group_grids", "Dynamic unless the granularity is Group",
                      "Static");
  }
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

std::vector<Eigen::Index> column_order(const Eigen::VectorXd& diag, ColumnOrder order) {
  std::vector<Eigen::Index> perm(diag.size());
  std::iota(perm.begin(), perm.end(), Eigen::Index{0});
  if (order == ColumnOrder::ActivationOrder) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return diag[a] > diag[b]; });
  }
  return perm;
}

// The upper U with U^T U = A^-1 (A symmetric positive definite), which the
// reference gets as cholesky -> cholesky_inverse -> cholesky(upper): three
// O(n^3) steps. With J the reversal permutation, J A J = M M^T (M lower) gives
// A = R R^T with R = J M J upper, so A^-1 = (R^-1)^T R^-1 and, R^-1 being upper
// with a positive diagonal, U = R^-1 = J M^-1 J: one Cholesky and one
// triangular inverse. `reversed` holds J A J on entry and is overwritten.
// False when A is not (numerically) positive definite.
bool inverse_upper_cholesky(Eigen::MatrixXd& reversed, Eigen::MatrixXd& U) {
  const auto n = static_cast<lapack_int>(reversed.rows());
  // The _work variants skip LAPACKE's NaN scans; a NaN fails a pivot or the final check.
  if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, reversed.data(), n) != 0) return false;
  if (LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', n, reversed.data(), n) != 0) return false;
  reversed.triangularView<Eigen::StrictlyUpper>().setZero();
  U = reversed.reverse();
  return U.allFinite();
}

}  // namespace

GptqHessian prepare_hessian(const Eigen::MatrixXd& H, const GptqConfig& config) {
  config.validate();
  if (H.rows() != H.cols()) {
    throw input_error("prepare_hessian: H", "a square matrix",
                      "[" + std::to_string(H.rows()) + ", " + std::to_string(H.cols()) + "]");
  }
  GptqHessian f;
  const Eigen::Index n = H.rows();
  Eigen::VectorXd diag = H.diagonal();
  f.dead.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    f.dead[i] = diag[i] == 0;
    if (f.dead[i]) diag[i] = 1;
  }
  f.order = column_order(diag, config.order);
  // H in quantization order, reversed (see inverse_upper_cholesky).
  Eigen::MatrixXd reversed(n, n);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) reversed(i, j) = H(f.order[n - 1 - i], f.order[n - 1 - j]);
    reversed(j, j) = diag[f.order[n - 1 - j]];  // dead columns get H_ii = 1
  }
  f.damping = config.damp * diag.mean();
  for (f.damping_retries = 0;; ++f.damping_retries, f.damping *= 10) {
    Eigen::MatrixXd A = reversed;
    A.diagonal().array() += f.damping;
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
  const GptqHessian& f;
  ColMatrix<T> U;                   // f.U in T
  ColMatrix<T> W;                   // [out, in] in T, dead columns zeroed, original order
  GridTable<T> fixed;               // Tensor/Channel grids (original W) or static groups
  std::vector<std::int32_t> g_idx;  // by original column
};

// Mutable per-row outputs; tasks write disjoint rows.
template <class T>
struct RowOutputs {
  CodeMatrix& codes;          // [out, in], original column order
  GridTable<T>& grids;        // [out, n_groups]; tasks write dynamic group grids
  std::vector<double>& loss;  // per row
};

// The grids of a block of rows for quantized column j (permuted index).
template <class T>
void select_grids(const Plan<T>& plan, const ColMatrix<T>& W, Eigen::Index r0, Eigen::Index j,
                  const RowOutputs<T>& out, Eigen::Array<T, Eigen::Dynamic, 1>& scale,
                  Eigen::Array<T, Eigen::Dynamic, 1>& zero) {
  const QuantSpec& spec = plan.config.spec;
  const bool dynamic_groups =
      spec.granularity == Granularity::Group && plan.config.group_grids == GroupGrids::Dynamic;
  if (dynamic_groups) {
    if (j % spec.group_size != 0) return;
    // Reference quirk kept on purpose: the group's range is read from the lazily
    // updated W, which lacks this block's in-block updates.
    const auto width = std::min<Eigen::Index>(spec.group_size, W.cols() - j);
    const auto part = W.middleCols(j, width);
    for (Eigen::Index r = 0; r < W.rows(); ++r) {
      const auto g = grid_from_range<T>(part.row(r).minCoeff(), part.row(r).maxCoeff(), spec.maxq(),
                                        spec.symmetry);
      scale[r] = out.grids.scales(r0 + r, j / spec.group_size) = g.scale;
      zero[r] = out.grids.zeros(r0 + r, j / spec.group_size) = g.zero;
    }
    return;
  }
  const Eigen::Index group = plan.g_idx[plan.f.order[j]];
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    scale[r] = plan.fixed.scales(r0 + r, group);
    zero[r] = plan.fixed.zeros(r0 + r, group);
  }
}

// Columns per sub-block inside a lazy block: rank-1 updates stay inside a
// sub-block and a small GEMM carries each sub-block's error to the rest of the
// block. Same arithmetic as the reference up to summation order.
constexpr Eigen::Index kSubBlock = 16;

template <class T>
using Column = Eigen::Array<T, Eigen::Dynamic, 1>;

// Quantizes column i of the block W1 (quantized column j) for every row:
// writes the codes and err(:, i) = (w - q) / d, and adds err^2 / 2 to loss.
template <class T>
void quantize_column(const Plan<T>& plan, Eigen::Index r0, Eigen::Index j, Eigen::Index i,
                     const ColMatrix<T>& W1, const Column<T>& scale, const Column<T>& zero,
                     ColMatrix<T>& err, Column<double>& loss, const RowOutputs<T>& out) {
  const auto maxq = static_cast<T>(plan.config.spec.maxq());
  const auto w = W1.col(i).array();
  // quantize_code / dequantize_code, vectorized: rint rounds half to even.
  const Column<T> code = ((w / scale).rint() + zero).max(T(0)).min(maxq);
  err.col(i) = ((w - scale * (code - zero)) / plan.U(j, j)).matrix();
  loss += err.col(i).array().template cast<double>().square() / 2;
  const Eigen::Index column = plan.f.order[j];
  for (Eigen::Index r = 0; r < code.size(); ++r) {
    out.codes(r0 + r, column) = static_cast<std::uint8_t>(code[r]);
  }
}

// GPTQ on rows [r0, r0 + rows): the reference's column loop with lazy block updates.
template <class T>
void quantize_rows(const Plan<T>& plan, Eigen::Index r0, Eigen::Index rows,
                   const RowOutputs<T>& out) {
  const Eigen::Index n = plan.W.cols();
  const ColMatrix<T>& U = plan.U;
  ColMatrix<T> W(rows, n);  // this task's rows, permuted columns
  for (Eigen::Index j = 0; j < n; ++j) W.col(j) = plan.W.col(plan.f.order[j]).segment(r0, rows);
  Column<T> scale(rows), zero(rows);
  Column<double> loss = Column<double>::Zero(rows);
  for (Eigen::Index i1 = 0; i1 < n; i1 += plan.config.block_size) {
    const Eigen::Index count = std::min<Eigen::Index>(plan.config.block_size, n - i1);
    ColMatrix<T> W1 = W.middleCols(i1, count);
    ColMatrix<T> err(rows, count);
    for (Eigen::Index b1 = 0; b1 < count; b1 += kSubBlock) {
      const Eigen::Index b2 = std::min(b1 + kSubBlock, count);
      for (Eigen::Index i = b1; i < b2; ++i) {
        select_grids(plan, W, r0, i1 + i, out, scale, zero);
        quantize_column(plan, r0, i1 + i, i, W1, scale, zero, err, loss, out);
        for (Eigen::Index k = i + 1; k < b2; ++k) W1.col(k) -= U(i1 + i, i1 + k) * err.col(i);
      }
      W1.rightCols(count - b2).noalias() -=
          err.middleCols(b1, b2 - b1) * U.block(i1 + b1, i1 + b2, b2 - b1, count - b2);
    }
    // One GEMM carries the whole block's error to the columns right of it.
    W.rightCols(n - i1 - count).noalias() -= err * U.block(i1, i1 + count, count, n - i1 - count);
  }
  for (Eigen::Index r = 0; r < rows; ++r) out.loss[r0 + r] = loss[r];
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

template <class T>
GptqResult run_gptq(const MatrixRM& W, const GptqHessian& f, const GptqConfig& config) {
  const QuantSpec& spec = config.spec;
  Plan<T> plan{config, f, f.U.cast<T>(), W.cast<T>(), {}, group_index(spec, config, f.order)};
  // As in the reference, per-tensor/channel grids see W before dead columns are zeroed.
  if (spec.granularity != Granularity::Group) plan.fixed = fit_grids(plan.W, spec);
  for (Eigen::Index c = 0; c < W.cols(); ++c) {
    if (f.dead[c]) plan.W.col(c).setZero();
  }
  if (config.group_grids == GroupGrids::Static) plan.fixed = fit_grids(plan.W, spec);

  GptqResult result;
  result.quantized = {spec, CodeMatrix(W.rows(), W.cols()), {}, {}, plan.g_idx};
  GridTable<T> grids = plan.fixed;  // dynamic group grids: filled in by the row tasks
  if (spec.granularity == Granularity::Group && config.group_grids == GroupGrids::Dynamic) {
    const int n_groups = spec.groups_per_row(static_cast<int>(W.cols()));
    grids.scales.resize(W.rows(), n_groups);
    grids.zeros.resize(W.rows(), n_groups);
  }
  std::vector<double> loss(W.rows(), 0.0);
  const RowOutputs<T> out{result.quantized.codes, grids, loss};

  const Eigen::Index step = config.rows_per_task;
  const Eigen::Index tasks = (W.rows() + step - 1) / step;
  std::mutex progress_mutex;
  std::int64_t rows_done = 0;
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, tasks, 1), [&](const auto& range) {
    for (Eigen::Index t = range.begin(); t < range.end(); ++t) {
      const Eigen::Index rows = std::min(step, W.rows() - t * step);
      quantize_rows(plan, t * step, rows, out);
      if (config.progress) {
        const std::lock_guard lock(progress_mutex);
        rows_done += rows;
        config.progress(rows_done, W.rows());
      }
    }
  });
  result.quantized.scales = grids.scales.template cast<float>();
  result.quantized.zeros = grids.zeros.template cast<float>();
  result.loss = std::accumulate(loss.begin(), loss.end(), 0.0);  // fixed order
  return result;
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
    result.quantized = rtn_quantize(W, config.spec);
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

GptqResult gptq_quantize(const MatrixRM& W, const Eigen::MatrixXd& H, const GptqConfig& config) {
  require_hessian_shape(H.rows(), H.cols(), W);
  return gptq_quantize(W, prepare_hessian(H, config), config);
}

}  // namespace ptq
