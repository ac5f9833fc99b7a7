#pragma once
// Launchers of ptq's own CUDA kernels (kernels.cu), for the backend.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ptq::cuda {

// `matrices` row-major [seq, seq] score matrices, consecutive in `scores`:
// row i of each becomes the softmax of its first i + 1 entries (keys after
// query i masked to probability 0), in float32, as the CPU's attention does.
void causal_softmax(float* scores, std::int64_t matrices, int seq, cudaStream_t stream);

// Row-major float32 arrays throughout; `rows` rows of `n` columns.
// out = x * rsqrt(mean(x^2) + eps) * w per row, the mean in double (out may be x).
void rms_norm(const float* x, const float* w, float* out, std::int64_t rows, int n, float eps,
              cudaStream_t stream);
void add_bias(float* y, const float* b, std::int64_t rows, int n, cudaStream_t stream);
// Rotate-half RoPE of each head of x [rows, cols]; tables [seq_len, head_dim / 2].
void rope(float* x, const float* cos, const float* sin, std::int64_t rows, int cols, int head_dim,
          int seq_len, cudaStream_t stream);
// gate = act(gate) * up elementwise: SiLU, or GELU's tanh approximation.
void gated(float* gate, const float* up, std::int64_t count, bool silu, cudaStream_t stream);
void add_float_into_double(double* sums, const float* part, std::int64_t count,
                           cudaStream_t stream);

// GPTQ's factor (gptq.cpp prepare_hessian, natural order) from sums [n, n]
// of `tokens` rows and H = 2 (sums / tokens): diag = diag(H); a (column-major) = J (H + damping I)
// J with dead columns' H_ii = 1; after potrf and trtri of a's lower triangle, u (row-major) = J a
// J, the upper factor.
void hessian_diagonal(const double* sums, double tokens, int n, double* diag, cudaStream_t stream);
void reversed_damped_hessian(const double* sums, double tokens, const double* diag, double damping,
                             int n, double* a, cudaStream_t stream);
void upper_factor(const double* a, int n, float* u, cudaStream_t stream);
void zero_dead(float* w, std::int64_t rows, int n, const double* diag, cudaStream_t stream);

// The uniform grid of GPTQ's column loop (RangeRule::IncludeZero).
struct GptqGrid {
  int maxq = 15;
  bool symmetric = false;
  bool f16_scales = false;  // ScaleStorage::f16
  int group = 0;            // columns per dynamic group; 0: one grid per row, set up front
  // The MSE clip (clip.hpp clipped_grid): ranges p [lo, hi], p = 1 - k / clip_steps
  // for k < clip_candidates, the one of least sum d_c |w_c - Q(w_c)|^clip_norm;
  // d_c = importance[c] (diag(H), [n]) or 1 when null. 0 candidates: [lo, hi].
  int clip_candidates = 0;
  int clip_steps = 100;
  float clip_norm = 2.4f;
  const double* importance = nullptr;
};
// Per-row grids of w [rows, n] into scales and zeros [rows].
void row_grids(const float* w, std::int64_t rows, int n, const GptqGrid& grid, float* scales,
               float* zeros, cudaStream_t stream);

// One lazy block, columns [i1, i1 + count), of GPTQ's column loop over w
// [out, n]: codes, grids (dynamic groups are written as found), per-row loss
// added, err [count, out] = (w - q) / U_jj for the trailing update, and the
// block's columns of w replaced by their dequantized values.
struct GptqBlock {
  float* w = nullptr;
  long long out = 0;
  int n = 0, i1 = 0, count = 0;
  const float* u = nullptr;  // [n, n] row-major upper factor
  GptqGrid grid;
  float* scales = nullptr;  // [out, groups]
  float* zeros = nullptr;
  unsigned char* codes = nullptr;  // [out, n]
  float* err = nullptr;            // [count, out]
  double* loss = nullptr;          // [out]
};
void gptq_columns(const GptqBlock& block, cudaStream_t stream);
// out = a - b elementwise.
void subtract(const float* a, const float* b, float* out, std::int64_t count, cudaStream_t stream);
// float_output_correction's system: a (column-major) = H + damping I with H
// = 2 (sums / tokens), sums [n, n] symmetric; b (column-major) = D = 2 (cross
// / tokens), cross row-major [n, n].
void damped_hessian(const double* sums, double tokens, double damping, int n, double* a,
                    cudaStream_t stream);
void cross_matrix(const double* cross, double tokens, int n, double* b, cudaStream_t stream);
// m (row-major float) = x (column-major double), [n, n].
void to_row_major_float(const double* x, int n, float* m, cudaStream_t stream);
// sums[r] = sum over row r of (a - b)^2, in double.
void squared_errors(const float* a, const float* b, std::int64_t rows, int n, double* sums,
                    cudaStream_t stream);

}  // namespace ptq::cuda
