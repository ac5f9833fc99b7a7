#include <cuda_fp16.h>

#include <cmath>

#include "algorithms/cuda/kernels.hpp"

namespace ptq::cuda {

namespace {

constexpr int kThreads = 256;  // per row; a fixed shape keeps the sums' order fixed

// The max or sum over the block's threads, the same order every launch;
// `identity` is op's neutral value (-inf for max, 0 for sum).
template <class Op>
__device__ float block_reduce(float value, Op op, float identity, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_down_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < kThreads / 32 ? shared[lane] : identity;
    for (int offset = 16; offset > 0; offset /= 2)
      value = op(value, __shfl_down_sync(0xffffffffu, value, offset));
    if (lane == 0) shared[0] = value;
  }
  __syncthreads();
  const float result = shared[0];
  __syncthreads();  // shared is reused by the next reduction
  return result;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

__global__ void causal_softmax_rows(float* scores, int seq) {
  __shared__ float shared[kThreads / 32];
  const long long row = blockIdx.x;
  const int last = static_cast<int>(row % seq);  // query i sees keys 0..i
  float* x = scores + row * seq;
  float peak = -INFINITY;
  for (int j = threadIdx.x; j <= last; j += kThreads) peak = fmaxf(peak, x[j]);
  peak = block_reduce(peak, Max{}, -INFINITY, shared);
  float sum = 0.0f;
  for (int j = threadIdx.x; j <= last; j += kThreads) {
    const float e = expf(x[j] - peak);
    x[j] = e;
    sum += e;
  }
  const float inverse = 1.0f / block_reduce(sum, Sum{}, 0.0f, shared);
  for (int j = threadIdx.x; j < seq; j += kThreads) x[j] = j <= last ? x[j] * inverse : 0.0f;
}

__device__ double block_sum_double(double value, double* shared) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < kThreads / 32 ? shared[lane] : 0.0;
    for (int offset = 16; offset > 0; offset /= 2)
      value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) shared[0] = value;
  }
  __syncthreads();
  const double result = shared[0];
  __syncthreads();
  return result;
}

// One row per block: the CPU's rms_norm (sum of squares in double).
__global__ void rms_norm_rows(const float* x, const float* w, float* out, int n, float eps) {
  __shared__ double shared[kThreads / 32];
  const float* in = x + static_cast<long long>(blockIdx.x) * n;
  float* to = out + static_cast<long long>(blockIdx.x) * n;
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += kThreads) sum += double(in[i]) * in[i];
  sum = block_sum_double(sum, shared);
  const float inverse = 1.0f / sqrtf(static_cast<float>(sum / n) + eps);
  for (int i = threadIdx.x; i < n; i += kThreads) to[i] = w[i] * (in[i] * inverse);
}

__global__ void add_bias_rows(float* y, const float* b, long long count, int n) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) y[i] += b[i % n];
}

// One thread per (row, head, pair i < half).
__global__ void rope_rows(float* x, const float* cos, const float* sin, long long count, int cols,
                          int head_dim, int seq_len) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= count) return;
  const int half = head_dim / 2, pairs = cols / 2;
  const long long row = idx / pairs;
  const int head = static_cast<int>(idx % pairs) / half, i = static_cast<int>(idx % pairs) % half;
  const long long table = (row % seq_len) * half + i;
  float* v = x + row * cols + head * head_dim;
  const float x1 = v[i], x2 = v[i + half], c = cos[table], s = sin[table];
  v[i] = x1 * c - x2 * s;
  v[i + half] = x2 * c + x1 * s;
}

__global__ void gated_rows(float* gate, const float* up, long long count, bool silu) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float g = gate[i];
  if (silu) {
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  } else {
    const float root_2_over_pi = 0.7978845608028654f;
    gate[i] = 0.5f * g * (1.0f + tanhf(root_2_over_pi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

__global__ void add_into_double(double* sums, const float* part, long long count) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) sums[i] += part[i];
}

// gptq_hessian's H = 2 (sums / tokens), in that order.
__device__ double hessian_entry(double sum, double tokens) { return sum / tokens * 2.0; }

__global__ void scaled_diagonal(const double* sums, double tokens, int n, double* diag) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) diag[i] = hessian_entry(sums[static_cast<long long>(i) * n + i], tokens);
}

// Column-major A = J (H + damping I) J, dead columns' H_ii = 1.
__global__ void reversed_damped(const double* sums, double tokens, const double* diag,
                                double damping, int n, double* a) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(n) * n) return;
  const int i = static_cast<int>(idx % n), j = static_cast<int>(idx / n);
  const int hi = n - 1 - i, hj = n - 1 - j;
  if (i == j) {
    a[idx] = (diag[hj] == 0.0 ? 1.0 : diag[hj]) + damping;
  } else {
    a[idx] = hessian_entry(sums[static_cast<long long>(hi) * n + hj], tokens);
  }
}

// U (row-major float) = J L^-1 J from the column-major lower L^-1 in a.
__global__ void upper_from_reversed(const double* a, int n, float* u) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(n) * n) return;
  const int i = static_cast<int>(idx / n), j = static_cast<int>(idx % n);
  u[idx] =
      i <= j ? static_cast<float>(a[(n - 1 - i) + static_cast<long long>(n - 1 - j) * n]) : 0.0f;
}

__global__ void zero_dead_columns(float* w, long long count, int n, const double* diag) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count && diag[i % n] == 0.0) w[i] = 0.0f;
}

// grid_from_range (algorithms/quant_grid.hpp) in float32.
__device__ void grid_from_range(float lo, float hi, const GptqGrid& g, float& scale, float& zero) {
  float xmin = fminf(lo, 0.0f), xmax = fmaxf(hi, 0.0f);
  if (g.symmetric) {
    xmax = fmaxf(fabsf(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  scale = (xmax - xmin) / static_cast<float>(g.maxq);
  if (g.f16_scales) {
    const float half = __half2float(__float2half_rn(scale));
    scale = half == 0.0f ? 0x1p-24f : half;
  }
  zero = g.symmetric ? static_cast<float>(g.maxq + 1) / 2.0f : rintf(-xmin / scale);
}

// clip_detail::grid_error in float32: the sum, in column order, of d_c
// |w_c - Q(w_c)|^norm over the `width` weights w.
__device__ float grid_error(const float* w, int width, const double* importance, const GptqGrid& g,
                            float scale, float zero) {
  const float maxq = static_cast<float>(g.maxq);
  float total = 0.0f;
  for (int c = 0; c < width; ++c) {
    const float code = scale == 0.0f ? zero : fminf(fmaxf(rintf(w[c] / scale) + zero, 0.0f), maxq);
    const float e = fabsf(w[c] - scale * (code - zero));
    const float p = g.clip_norm == 2.0f ? e * e : powf(e, g.clip_norm);
    total += importance == nullptr ? p : static_cast<float>(importance[c]) * p;
  }
  return total;
}

// clipped_grid (clip.hpp) of the `width` weights w: the min/max range, or
// the MSE clip's shrunk range of least error (ties keep the wider range).
__device__ void clipped_grid(const float* w, int width, const double* importance, const GptqGrid& g,
                             float& scale, float& zero) {
  float lo = w[0], hi = w[0];
  for (int c = 1; c < width; ++c) {
    lo = fminf(lo, w[c]);
    hi = fmaxf(hi, w[c]);
  }
  grid_from_range(lo, hi, g, scale, zero);
  if (g.clip_candidates == 0) return;
  float best = grid_error(w, width, importance, g, scale, zero);
  for (int k = 1; k < g.clip_candidates; ++k) {
    const float p = 1.0f - static_cast<float>(k) / static_cast<float>(g.clip_steps);
    float s = 0.0f, z = 0.0f;
    grid_from_range(p * lo, p * hi, g, s, z);
    const float error = grid_error(w, width, importance, g, s, z);
    if (error < best) {
      best = error;
      scale = s;
      zero = z;
    }
  }
}

// Per-channel grids from each whole row (before dead columns are zeroed).
__global__ void channel_grids(const float* w, long long rows, int n, GptqGrid g, float* scales,
                              float* zeros) {
  const long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  clipped_grid(w + r * n, n, g.importance, g, scales[r], zeros[r]);
}

constexpr int kGptqRows = 64;  // rows per block of the column loop, one thread each

// One lazy block of GPTQ's column loop for kGptqRows rows (gptq.cpp's
// quantize_block_rows): each thread walks its row's columns, the block's
// weights in shared memory, column-major with a padded stride so that the
// threads' accesses fall in distinct banks.
__global__ void gptq_block(GptqBlock b) {
  extern __shared__ float w1[];
  const int stride = kGptqRows + 1;
  const long long r0 = static_cast<long long>(blockIdx.x) * kGptqRows;
  const int rows = static_cast<int>(min(static_cast<long long>(kGptqRows), b.out - r0));
  for (int idx = threadIdx.x; idx < rows * b.count; idx += blockDim.x) {
    const int row = idx / b.count, col = idx % b.count;
    w1[col * stride + row] = b.w[(r0 + row) * b.n + b.i1 + col];
  }
  __syncthreads();
  const int t = threadIdx.x;
  if (t < rows) {
    const long long r = r0 + t;
    const int groups = b.grid.group > 0 ? (b.n + b.grid.group - 1) / b.grid.group : 1;
    // The grid of the group this block starts in: set when its first column
    // came up (in an earlier block, for groups wider than a block), or at i = 0.
    const int first_group = b.grid.group > 0 ? b.i1 / b.grid.group : 0;
    float scale = b.scales[r * groups + first_group], zero = b.zeros[r * groups + first_group];
    double loss = 0.0;
    const float maxq = static_cast<float>(b.grid.maxq);
    for (int i = 0; i < b.count; ++i) {
      const int j = b.i1 + i;
      if (b.grid.group > 0 && j % b.grid.group == 0) {
        // The reference's quirk, as on the CPU: the range is read from w,
        // which lacks this block's in-block updates.
        const int width = min(b.grid.group, b.n - j);
        const double* importance = b.grid.importance == nullptr ? nullptr : b.grid.importance + j;
        clipped_grid(b.w + r * b.n + j, width, importance, b.grid, scale, zero);
        b.scales[r * groups + j / b.grid.group] = scale;
        b.zeros[r * groups + j / b.grid.group] = zero;
      }
      const float w = w1[i * stride + t];
      const float code = scale == 0.0f ? zero : fminf(fmaxf(rintf(w / scale) + zero, 0.0f), maxq);
      const float dequantized = scale * (code - zero);
      const float err = (w - dequantized) / b.u[static_cast<long long>(j) * b.n + j];
      loss += static_cast<double>(err) * static_cast<double>(err) / 2;
      b.codes[r * b.n + j] = static_cast<unsigned char>(code);
      b.err[static_cast<long long>(i) * b.out + r] = err;
      w1[i * stride + t] = dequantized;
      const float* u = b.u + static_cast<long long>(j) * b.n + b.i1;
      for (int k = i + 1; k < b.count; ++k) w1[k * stride + t] -= u[k] * err;
    }
    b.loss[r] += loss;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < rows * b.count; idx += blockDim.x) {
    const int row = idx / b.count, col = idx % b.count;
    b.w[(r0 + row) * b.n + b.i1 + col] = w1[col * stride + row];
  }
}

// Per row: the sum of (a - b)^2 in double, threads in a fixed order.
__global__ void squared_error_rows(const float* a, const float* b, int n, double* rows) {
  __shared__ double shared[kThreads / 32];
  const long long base = static_cast<long long>(blockIdx.x) * n;
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const double d = double(a[base + i]) - double(b[base + i]);
    sum += d * d;
  }
  sum = block_sum_double(sum, shared);
  if (threadIdx.x == 0) rows[blockIdx.x] = sum;
}

__global__ void subtract_elements(const float* a, const float* b, float* out, long long count) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = a[i] - b[i];
}

__global__ void damped_entries(const double* sums, double tokens, double damping, int n,
                               double* a) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(n) * n) return;
  const double h = hessian_entry(sums[idx], tokens);
  a[idx] = idx % n == idx / n ? h + damping : h;
}

__global__ void cross_entries(const double* cross, double tokens, int n, double* b) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(n) * n) return;
  const long long i = idx % n, j = idx / n;  // b column-major: b[i + j n] = D_ij
  b[idx] = hessian_entry(cross[i * n + j], tokens);
}

__global__ void row_major_float(const double* x, int n, float* m) {
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(n) * n) return;
  const long long i = idx / n, j = idx % n;
  m[idx] = static_cast<float>(x[i + j * n]);
}

unsigned blocks_for(long long count) {
  return static_cast<unsigned>((count + kThreads - 1) / kThreads);
}

}  // namespace

void rms_norm(const float* x, const float* w, float* out, std::int64_t rows, int n, float eps,
              cudaStream_t stream) {
  if (rows > 0)
    rms_norm_rows<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, w, out, n, eps);
}

void add_bias(float* y, const float* b, std::int64_t rows, int n, cudaStream_t stream) {
  const long long count = static_cast<long long>(rows) * n;
  if (count > 0) add_bias_rows<<<blocks_for(count), kThreads, 0, stream>>>(y, b, count, n);
}

void rope(float* x, const float* cos, const float* sin, std::int64_t rows, int cols, int head_dim,
          int seq_len, cudaStream_t stream) {
  const long long count = static_cast<long long>(rows) * (cols / 2);
  if (count > 0)
    rope_rows<<<blocks_for(count), kThreads, 0, stream>>>(x, cos, sin, count, cols, head_dim,
                                                          seq_len);
}

void gated(float* gate, const float* up, std::int64_t count, bool silu, cudaStream_t stream) {
  if (count > 0) gated_rows<<<blocks_for(count), kThreads, 0, stream>>>(gate, up, count, silu);
}

void add_float_into_double(double* sums, const float* part, std::int64_t count,
                           cudaStream_t stream) {
  if (count > 0) add_into_double<<<blocks_for(count), kThreads, 0, stream>>>(sums, part, count);
}

void hessian_diagonal(const double* sums, double tokens, int n, double* diag, cudaStream_t stream) {
  scaled_diagonal<<<blocks_for(n), kThreads, 0, stream>>>(sums, tokens, n, diag);
}

void reversed_damped_hessian(const double* sums, double tokens, const double* diag, double damping,
                             int n, double* a, cudaStream_t stream) {
  const long long count = static_cast<long long>(n) * n;
  reversed_damped<<<blocks_for(count), kThreads, 0, stream>>>(sums, tokens, diag, damping, n, a);
}

void upper_factor(const double* a, int n, float* u, cudaStream_t stream) {
  const long long count = static_cast<long long>(n) * n;
  upper_from_reversed<<<blocks_for(count), kThreads, 0, stream>>>(a, n, u);
}

void zero_dead(float* w, std::int64_t rows, int n, const double* diag, cudaStream_t stream) {
  const long long count = static_cast<long long>(rows) * n;
  if (count > 0) zero_dead_columns<<<blocks_for(count), kThreads, 0, stream>>>(w, count, n, diag);
}

void row_grids(const float* w, std::int64_t rows, int n, const GptqGrid& grid, float* scales,
               float* zeros, cudaStream_t stream) {
  if (rows > 0)
    channel_grids<<<blocks_for(rows), kThreads, 0, stream>>>(w, rows, n, grid, scales, zeros);
}

void gptq_columns(const GptqBlock& block, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((block.out + kGptqRows - 1) / kGptqRows);
  const auto shared = static_cast<std::size_t>(block.count) * (kGptqRows + 1) * sizeof(float);
  if (blocks > 0) gptq_block<<<blocks, kGptqRows, shared, stream>>>(block);
}

void subtract(const float* a, const float* b, float* out, std::int64_t count, cudaStream_t stream) {
  if (count > 0) subtract_elements<<<blocks_for(count), kThreads, 0, stream>>>(a, b, out, count);
}

void damped_hessian(const double* sums, double tokens, double damping, int n, double* a,
                    cudaStream_t stream) {
  const long long count = static_cast<long long>(n) * n;
  damped_entries<<<blocks_for(count), kThreads, 0, stream>>>(sums, tokens, damping, n, a);
}

void cross_matrix(const double* cross, double tokens, int n, double* b, cudaStream_t stream) {
  const long long count = static_cast<long long>(n) * n;
  cross_entries<<<blocks_for(count), kThreads, 0, stream>>>(cross, tokens, n, b);
}

void to_row_major_float(const double* x, int n, float* m, cudaStream_t stream) {
  const long long count = static_cast<long long>(n) * n;
  row_major_float<<<blocks_for(count), kThreads, 0, stream>>>(x, n, m);
}

void squared_errors(const float* a, const float* b, std::int64_t rows, int n, double* sums,
                    cudaStream_t stream) {
  if (rows > 0)
    squared_error_rows<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a, b, n, sums);
}

void causal_softmax(float* scores, std::int64_t matrices, int seq, cudaStream_t stream) {
  const auto rows = static_cast<unsigned>(matrices * seq);
  if (rows == 0) return;
  causal_softmax_rows<<<rows, kThreads, 0, stream>>>(scores, seq);
}

}  // namespace ptq::cuda
