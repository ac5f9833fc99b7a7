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

}  // namespace

void causal_softmax(float* scores, std::int64_t matrices, int seq, cudaStream_t stream) {
  const auto rows = static_cast<unsigned>(matrices * seq);
  if (rows == 0) return;
  causal_softmax_rows<<<rows, kThreads, 0, stream>>>(scores, seq);
}

}  // namespace ptq::cuda
