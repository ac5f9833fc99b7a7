#pragma once
// Launchers of ptq's own CUDA kernels (kernels.cu), for the backend.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ptq::cuda {

// `matrices` row-major [seq, seq] score matrices, consecutive in `scores`:
// row i of each becomes the softmax of its first i + 1 entries (keys after
// query i masked to probability 0), in float32, as the CPU's attention does.
void causal_softmax(float* scores, std::int64_t matrices, int seq, cudaStream_t stream);

}  // namespace ptq::cuda
