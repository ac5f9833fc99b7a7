#pragma once
// The CUDA implementation of MatrixBackend (algorithms/backend.hpp) on one
// GPU: GEMMs and X^T X with cuBLAS in float32 (no TF32: full float32 products,
// float32 accumulation), causal attention as batched cuBLAS GEMMs around
// ptq's softmax kernel, GPTQ's Cholesky factor and its inverse with cuSOLVER
// in double. Operands travel host -> device -> host on every call through
// buffers kept between calls; calls are serialized. Same inputs give the same
// bits run to run on a given GPU (one stream, cuBLAS without atomics), not
// the CPU's bits: the summation order differs.
//
// Built with -DPTQ_CUDA=ON as the shared library libptq_cuda.so, which ptq
// loads only for --device cuda (pipeline/cli/device_flag.cpp): a ptq built
// with it runs on machines without CUDA, and CPU runs do not map CUDA's
// libraries. This header names no CUDA type.
#include <memory>
#include <vector>

#include "algorithms/backend.hpp"

namespace ptq {

// GPUs `devices` (cudaGetDeviceCount's numbering, each once): the dense
// kernels on the first, the GPU path (device_group) on all of them. InputError
// naming the device when there is no such GPU or the CUDA runtime cannot
// start, and for several GPUs when NCCL cannot be loaded.
std::unique_ptr<MatrixBackend> make_cuda_backend(const std::vector<int>& devices);

// How many GPUs the CUDA runtime sees (0 when none or no driver).
int cuda_device_count();

// The two functions above, for a program that loads the library with dlopen.
struct CudaBackendApi {
  std::unique_ptr<MatrixBackend> (*make)(const std::vector<int>& devices);
  int (*device_count)();
};

}  // namespace ptq

// The library's one C symbol: dlsym(handle, "ptq_cuda_backend_api").
extern "C" const ptq::CudaBackendApi* ptq_cuda_backend_api();
