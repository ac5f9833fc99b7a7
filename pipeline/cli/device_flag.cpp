#include "pipeline/cli/device_flag.hpp"

#include <dlfcn.h>

#include <charconv>
#include <filesystem>

#include "algorithms/cuda/cuda_backend.hpp"
#include "io/error.hpp"

namespace ptq::cli {

namespace {

constexpr const char* kExpected = "cpu, cuda or cuda:N (one GPU index)";
constexpr const char* kLibrary = "libptq_cuda.so";

// The GPU index of "cuda" (0) or "cuda:N"; -1 for "cpu".
int gpu_index(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  const std::string prefix = "cuda:";
  int index = -1;
  const char* first = device.data() + prefix.size();
  const char* last = device.data() + device.size();
  if (device.rfind(prefix, 0) != 0 || first == last ||
      std::from_chars(first, last, index).ptr != last || index < 0)
    throw input_error("--device", kExpected, "\"" + device + "\"");
  return index;
}

// The CUDA backend library, from beside this executable (where the build puts
// it), else from the loader's search path. Loaded once and never unloaded:
// CUDA's libraries do not expect to be.
const CudaBackendApi& cuda_api(const std::string& device) {
  static const CudaBackendApi* api = nullptr;
  if (api != nullptr) return *api;
  std::error_code ec;
  const auto beside = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / kLibrary;
  void* handle = ec ? nullptr : dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr)
    throw input_error("--device " + device,
                      std::string("the CUDA backend ") + kLibrary +
                          " beside ptq (a build with -DPTQ_CUDA=ON) and CUDA's libraries",
                      dlerror());
  using Entry = const CudaBackendApi* (*)();
  const auto entry = reinterpret_cast<Entry>(dlsym(handle, "ptq_cuda_backend_api"));
  if (entry == nullptr)
    throw input_error(std::string(kLibrary), "the symbol ptq_cuda_backend_api", "none");
  api = entry();
  return *api;
}

}  // namespace

void add_device_flag(CLI::App& cmd, std::string& device) {
  cmd.add_option("--device", device,
                 "Where GEMMs, X^T X, attention and GPTQ's factorization run: cpu, or cuda[:N] "
                 "(a build with -DPTQ_CUDA=ON)")
      ->capture_default_str();
}

DeviceUse::DeviceUse(const std::string& device, DeviceMath math) {
  const int index = gpu_index(device);
  if (index < 0) return;
  backend_ = cuda_api(device).make(index);
  if (DeviceOps* ops = backend_->device_ops()) ops->set_math(math);
  scope_ = std::make_unique<BackendScope>(backend_.get());
}

}  // namespace ptq::cli
