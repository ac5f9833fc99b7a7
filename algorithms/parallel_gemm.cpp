#include "algorithms/parallel_gemm.hpp"

#include <cblas.h>
#include <tbb/blocked_range.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "algorithms/backend.hpp"
#include "io/error.hpp"

namespace ptq {

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, force_single_threaded_blas);
}

void force_single_threaded_blas() { openblas_set_num_threads(1); }

namespace {

Eigen::Index tiles(Eigen::Index size, Eigen::Index tile) { return (size + tile - 1) / tile; }

}  // namespace

void parallel_gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b,
                   GemmOp op_b, Eigen::Ref<MatrixRM> c, GemmOutput mode) {
  const bool transposed = op_b == GemmOp::transposed;
  const Eigen::Index m = a.rows(), k = a.cols(), n = transposed ? b.rows() : b.cols();
  PTQ_ASSERT((transposed ? b.cols() : b.rows()) == k);
  PTQ_ASSERT(c.rows() == m && c.cols() == n);
  if (m == 0 || n == 0) return;
  if (MatrixBackend* backend = active_backend()) return backend->gemm(a, b, op_b, c, mode);
  use_single_threaded_blas();
  const float beta = mode == GemmOutput::accumulate ? 1.0f : 0.0f;
  const tbb::blocked_range2d<Eigen::Index> grid(0, tiles(m, gemm_tile_rows), 1, 0,
                                                tiles(n, gemm_tile_cols), 1);
  tbb::parallel_for(grid, [&](const tbb::blocked_range2d<Eigen::Index>& r) {
    for (Eigen::Index ti = r.rows().begin(); ti < r.rows().end(); ++ti) {
      for (Eigen::Index tj = r.cols().begin(); tj < r.cols().end(); ++tj) {
        const Eigen::Index i0 = ti * gemm_tile_rows, j0 = tj * gemm_tile_cols;
        const auto rows = static_cast<int>(std::min(gemm_tile_rows, m - i0));
        const auto cols = static_cast<int>(std::min(gemm_tile_cols, n - j0));
        // B's tile starts at row j0 (transposed) or column j0 (plain).
        const float* b0 = transposed ? b.data() + j0 * b.outerStride() : b.data() + j0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, rows,
                    cols, static_cast<int>(k), 1.0f, a.data() + i0 * a.outerStride(),
                    static_cast<int>(a.outerStride()), b0, static_cast<int>(b.outerStride()), beta,
                    c.data() + i0 * c.outerStride() + j0, static_cast<int>(c.outerStride()));
      }
    }
  });
}

void parallel_xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) {
  const Eigen::Index n = x.cols();
  PTQ_ASSERT(upper.rows() == n && upper.cols() == n);
  if (n == 0) return;
  if (MatrixBackend* backend = active_backend()) return backend->xtx_upper(x, upper);
  use_single_threaded_blas();
  // Row-major x is the column-major x^T [n, rows] with leading dimension ld.
  const auto rows = static_cast<int>(x.rows()), ld = static_cast<int>(x.outerStride());
  const auto ldc = static_cast<int>(n);
  // The upper triangle in square tiles (row tile i <= column tile j), one task
  // each: a diagonal tile by SYRK, the others by GEMM. Equal-sized tasks keep
  // two threads busy even at n = 512 (column strips would not: their work
  // grows with the column index).
  const Eigen::Index t = tiles(n, syrk_tile_cols);
  std::vector<std::pair<Eigen::Index, Eigen::Index>> tasks;
  for (Eigen::Index j = 0; j < t; ++j)
    for (Eigen::Index i = 0; i <= j; ++i) tasks.emplace_back(i, j);
  tbb::parallel_for(std::size_t{0}, tasks.size(), [&](std::size_t k) {
    const Eigen::Index i0 = tasks[k].first * syrk_tile_cols, j0 = tasks[k].second * syrk_tile_cols;
    const auto h = static_cast<int>(std::min(syrk_tile_cols, n - i0));
    const auto w = static_cast<int>(std::min(syrk_tile_cols, n - j0));
    float* c = upper.data() + j0 * n + i0;
    if (i0 == j0) {
      cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, w, rows, 1.0f, x.data() + j0, ld, 0.0f, c, ldc);
    } else {
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, h, w, rows, 1.0f, x.data() + i0, ld,
                  x.data() + j0, ld, 0.0f, c, ldc);
    }
  });
}

}  // namespace ptq
