#include "algorithms/parallel_gemm.hpp"

#include <cblas.h>
#include <tbb/blocked_range.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <mutex>

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
  use_single_threaded_blas();
  // Row-major x is the column-major x^T [n, rows] with leading dimension ld.
  const auto rows = static_cast<int>(x.rows()), ld = static_cast<int>(x.outerStride());
  const auto ldc = static_cast<int>(n);
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, tiles(n, syrk_tile_cols), 1),
                    [&](const tbb::blocked_range<Eigen::Index>& r) {
    for (Eigen::Index t = r.begin(); t < r.end(); ++t) {
      // Columns [j0, j0 + w) of the upper triangle: rows above the diagonal
      // block by GEMM, the diagonal block by SYRK.
      const Eigen::Index j0 = t * syrk_tile_cols;
      const auto w = static_cast<int>(std::min(syrk_tile_cols, n - j0));
      float* column = upper.data() + j0 * n;
      if (j0 > 0) {
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, static_cast<int>(j0), w, rows, 1.0f,
                    x.data(), ld, x.data() + j0, ld, 0.0f, column, ldc);
      }
      cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, w, rows, 1.0f, x.data() + j0, ld, 0.0f,
                  column + j0, ldc);
    }
  });
}

}  // namespace ptq
