#pragma once
// What the CUDA backend's parts share (cuda_backend.cpp, device_ops.cpp): the
// error check, reusable device buffers, one GPU's stream and library handles,
// and attention over device memory.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/attention.hpp"
#include "algorithms/device.hpp"
#include "io/error.hpp"

namespace ptq::cuda {

// A failed CUDA call: out of GPU memory is the usual cause, which a user can
// act on (a smaller --batch-windows, another GPU), so it is an InputError.
class Checker {
 public:
  explicit Checker(int device) : where_("cuda:" + std::to_string(device)) {}
  void operator()(cudaError_t e, const char* call) const {
    if (e != cudaSuccess) fail(call, cudaGetErrorString(e));
  }
  void operator()(cublasStatus_t s, const char* call) const {
    if (s != CUBLAS_STATUS_SUCCESS) fail(call, cublasGetStatusString(s));
  }
  void operator()(cusolverStatus_t s, const char* call) const {
    if (s != CUSOLVER_STATUS_SUCCESS) fail(call, "cuSOLVER status " + std::to_string(int(s)));
  }
  const std::string& where() const { return where_; }

 private:
  [[noreturn]] void fail(const char* call, const std::string& why) const {
    throw input_error(where_ + " " + call, "success", why);
  }
  std::string where_;
};

// Device memory that grows to the largest request and is reused.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  template <class T>
  T* reserve(std::size_t count, const Checker& check) {
    const std::size_t bytes = std::max<std::size_t>(count * sizeof(T), 1);
    if (bytes > size_) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = nullptr;
      size_ = 0;
      check(cudaMalloc(&data_, bytes), "cudaMalloc");
      size_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// One GPU's stream, cuBLAS (no atomics: reproducible bits) and cuSOLVER.
struct Context {
  explicit Context(int device);  // InputError naming the device when there is none
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The calling thread's current device (TBB threads may call).
  void enter() const { check(cudaSetDevice(device), "cudaSetDevice"); }
  void sync() const { check(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

  int device;
  Checker check;
  std::string name;  // "cuda:0 (NVIDIA H200)"
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  cusolverDnParams_t params = nullptr;
};

// Causal attention (algorithms/attention.hpp) over packed row-major device
// arrays q [rows, heads * head_dim], k and v [rows, kv_heads * head_dim] into
// out [rows, heads * head_dim]: batched GEMMs in `compute` around ptq's
// softmax kernel. Scores and pointer arrays live in the two buffers.
void attention_on_device(const Context& c, const float* q, const float* k, const float* v,
                         float* out, std::int64_t rows, const AttentionShape& shape,
                         cublasComputeType_t compute, DeviceBuffer& scores, DeviceBuffer& pointers);

// The device-resident operations of the backend whose context is `c`.
std::unique_ptr<DeviceOps> make_device_ops(Context& c);

// The GPU path's devices: `first` (the backend's own context) and a context
// of each GPU in `others`; NCCL between them when there are any.
std::unique_ptr<DeviceGroup> make_device_group(Context& first, const std::vector<int>& others);

}  // namespace ptq::cuda
