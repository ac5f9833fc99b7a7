#pragma once
// Thread-count-independent matrix products.
//
// Threading policy of ptq: OpenBLAS always runs single-threaded (its own
// threads split a GEMM by thread count, which moves float rounding: measured
// 1.6e-5 on logits between 1 and 2 BLAS threads). All parallelism comes from
// oneTBB over FIXED-SIZE chunks whose boundaries do not depend on the thread
// count; each chunk is one single-threaded BLAS call, and partial results are
// combined in chunk order. So every output bit is the same for any thread
// count. ThreadScope (calibrate/threads.hpp) sets the policy for a driver; the
// helpers below also set it lazily, once, for callers that never made one.
// While a BackendScope is alive (algorithms/backend.hpp), parallel_gemm and
// parallel_xtx_upper run on its device instead (e.g. cuBLAS on a GPU).
#include <Eigen/Core>

#include "algorithms/matrix.hpp"

namespace ptq {

// Switches OpenBLAS to one thread, the first time it is called (thread-safe).
void use_single_threaded_blas();

// Switches OpenBLAS to one thread now, whatever happened before.
void force_single_threaded_blas();

enum class GemmOp { plain, transposed };        // op(B) = B or B^T
enum class GemmOutput { overwrite, accumulate };  // C = A op(B) or C += A op(B)

// C = A op(B) or C += A op(B), float32, row-major, C computed in fixed tiles of
// gemm_tile_rows x gemm_tile_cols, each one single-threaded cblas_sgemm, tiles
// run by tbb::parallel_for. A: [m, k]; op(B): [k, n] (B: [k, n] plain,
// [n, k] transposed); C: [m, n], already sized.
void parallel_gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b,
                   GemmOp op_b, Eigen::Ref<MatrixRM> c, GemmOutput mode);

// OpenBLAS packs a call's whole B tile (the weight, for a Linear) once per
// call, so the packing costs 1/gemm_tile_rows of the products: at 128 rows it
// took 8 % of `ptq eval`'s time on small, at 512 a quarter of that. A batch of
// eval windows (8 x 512 rows) still gives 8 row tiles to share out.
inline constexpr Eigen::Index gemm_tile_rows = 512;
inline constexpr Eigen::Index gemm_tile_cols = 1024;

// The upper triangle of x^T x into `upper` ([n, n], column-major; the strictly
// lower triangle is left untouched), x: [rows, n] row-major. Fixed square
// tiles of syrk_tile_cols, each computed by single-threaded BLAS, in parallel.
void parallel_xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper);

inline constexpr Eigen::Index syrk_tile_cols = 256;

}  // namespace ptq
