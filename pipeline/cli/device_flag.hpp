#pragma once
// --device cpu | cuda[:N]: where a command's dense kernels run (GEMMs, X^T X,
// attention, GPTQ's factorization; algorithms/backend.hpp). The CUDA backend
// is libptq_cuda.so, built with -DPTQ_CUDA=ON and loaded only when asked for.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "algorithms/backend.hpp"
#include "algorithms/device.hpp"

namespace ptq::cli {

void add_device_flag(CLI::App& cmd, std::string& device);

// For its lifetime, the device named by a --device value is in use. InputError
// for a malformed value, a missing GPU, or no loadable CUDA backend.
class DeviceUse {
 public:
  // `math`: how the GPU path multiplies (DeviceOps::set_math); `memory_limit`:
  // the bytes of each GPU it plans within (DeviceOps::limit_memory; 0: all).
  explicit DeviceUse(const std::string& device, DeviceMath math = DeviceMath::tf32,
                     std::uint64_t memory_limit = 0);
  DeviceUse(const DeviceUse&) = delete;
  DeviceUse& operator=(const DeviceUse&) = delete;

 private:
  std::unique_ptr<MatrixBackend> backend_;  // null: the CPU
  std::unique_ptr<BackendScope> scope_;
};

}  // namespace ptq::cli
