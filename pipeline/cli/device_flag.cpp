#include "pipeline/cli/device_flag.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "algorithms/cuda/cuda_backend.hpp"
#include "algorithms/device.hpp"
#include "io/error.hpp"

namespace ptq::cli {

namespace {

constexpr const char* kExpected =
    "cpu, cuda, cuda:N (one GPU index) or cuda:N,M,... (several GPUs, each once)";
constexpr const char* kLibrary = "libptq_cuda.so";

// The GPU indices of "cuda" ({0}), "cuda:N" or "cuda:N,M,..."; none for "cpu".
std::vector<int> gpu_indices(const std::string& device) {
  if (device == "cpu") return {};
  if (device == "cuda") return {0};
  const std::string prefix = "cuda:";
  auto bad = [&] { return input_error("--device", kExpected, "\"" + device + "\""); };
  if (device.rfind(prefix, 0) != 0) throw bad();
  std::vector<int> indices;
  const char* last = device.data() + device.size();
  for (const char* p = device.data() + prefix.size();; ++p) {
    int index = -1;
    const auto [end, ec] = std::from_chars(p, last, index);
    if (ec != std::errc() || index < 0 || std::ranges::find(indices, index) != indices.end())
      throw bad();
    indices.push_back(index);
    if (end == last) return indices;
    if (*end != ',') throw bad();
    p = end;
  }
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
                 "(a build with -DPTQ_CUDA=ON); cuda:0,1 spreads the GPU path's calibration "
                 "and GPTQ over GPUs 0 and 1")
      ->capture_default_str();
}

DeviceUse::DeviceUse(const std::string& device, DeviceMath math, std::uint64_t memory_limit) {
  const std::vector<int> indices = gpu_indices(device);
  if (indices.empty()) return;
  backend_ = cuda_api(device).make(indices);
  if (DeviceGroup* group = backend_->device_group())
    for (int i = 0; i < group->size(); ++i) {
      group->device(i).set_math(math);
      group->device(i).limit_memory(memory_limit);
    }
  scope_ = std::make_unique<BackendScope>(backend_.get());
}

}  // namespace ptq::cli
