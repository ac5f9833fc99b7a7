// DeviceGroup (algorithms/device.hpp) over the GPUs of one host: a
// CudaDevice a GPU, and NCCL's all-reduce and broadcast between them on each
// device's own stream, so the collectives are ordered after the work asked of
// each device before them. NCCL is loaded with dlopen when a group of several
// GPUs is made: a one-GPU run needs no NCCL, and the GPU machines have it in
// their Python packages rather than on the loader's path.
#include <dlfcn.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "algorithms/cuda/cuda_context.hpp"

namespace ptq::cuda {

namespace {

constexpr const char* kNccl = "libnccl.so.2";

struct NcclApi {
  decltype(&ncclCommInitAll) comm_init_all;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclBroadcast) broadcast;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
  decltype(&ncclGetErrorString) error_string;
};

template <class F>
F symbol(void* handle, const char* name) {
  void* f = dlsym(handle, name);
  if (f == nullptr) throw input_error(kNccl, std::string("the symbol ") + name, "none");
  return reinterpret_cast<F>(f);
}

// Loaded once and never unloaded, as CUDA's libraries expect.
const NcclApi& nccl(const std::string& where) {
  static const NcclApi* api = nullptr;
  if (api != nullptr) return *api;
  void* h = dlopen(kNccl, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr)
    throw input_error(where,
                      std::string("NCCL's ") + kNccl +
                          " on the loader's path (LD_LIBRARY_PATH; e.g. the lib folder of "
                          "Python's nvidia-nccl package)",
                      dlerror());
  static const NcclApi loaded{
      symbol<decltype(&ncclCommInitAll)>(h, "ncclCommInitAll"),
      symbol<decltype(&ncclCommDestroy)>(h, "ncclCommDestroy"),
      symbol<decltype(&ncclAllReduce)>(h, "ncclAllReduce"),
      symbol<decltype(&ncclBroadcast)>(h, "ncclBroadcast"),
      symbol<decltype(&ncclGroupStart)>(h, "ncclGroupStart"),
      symbol<decltype(&ncclGroupEnd)>(h, "ncclGroupEnd"),
      symbol<decltype(&ncclGetErrorString)>(h, "ncclGetErrorString")};
  api = &loaded;
  return *api;
}

class CudaGroup final : public DeviceGroup {
 public:
  CudaGroup(Context& first, const std::vector<int>& others);
  ~CudaGroup() override;
  CudaGroup(const CudaGroup&) = delete;
  CudaGroup& operator=(const CudaGroup&) = delete;

  int size() const override { return static_cast<int>(ops_.size()); }
  DeviceOps& device(int i) override { return *ops_.at(static_cast<std::size_t>(i)); }
  void all_reduce(std::span<DeviceSums> sums) override;
  void broadcast_rows(std::span<DeviceMatrix> x, Eigen::Index first, Eigen::Index count,
                      int root) override;

 private:
  void check(ncclResult_t r, const char* call) const {
    if (r != ncclSuccess) throw input_error(where_ + " " + call, "success", api_->error_string(r));
  }
  // NCCL calls for every device, issued as one group.
  template <class F>
  void collective(const char* call, F&& f);

  std::string where_;                           // "cuda:0,1"
  std::vector<std::unique_ptr<Context>> own_;   // the contexts after the first
  std::vector<Context*> contexts_;              // every device's
  std::vector<std::unique_ptr<DeviceOps>> ops_;
  const NcclApi* api_ = nullptr;
  std::vector<ncclComm_t> comms_;
};

CudaGroup::CudaGroup(Context& first, const std::vector<int>& others)
    : where_("cuda:" + std::to_string(first.device)) {
  contexts_.push_back(&first);
  for (int device : others) {
    where_.append(",").append(std::to_string(device));
    own_.push_back(std::make_unique<Context>(device));
    contexts_.push_back(own_.back().get());
  }
  for (Context* c : contexts_) ops_.push_back(make_device_ops(*c));
  if (contexts_.size() == 1) return;
  api_ = &nccl("--device " + where_);
  std::vector<int> devices;
  for (Context* c : contexts_) devices.push_back(c->device);
  comms_.resize(devices.size());
  check(api_->comm_init_all(comms_.data(), static_cast<int>(devices.size()), devices.data()),
        "ncclCommInitAll");
}

CudaGroup::~CudaGroup() {
  ops_.clear();
  for (ncclComm_t comm : comms_) api_->comm_destroy(comm);
}

template <class F>
void CudaGroup::collective(const char* call, F&& f) {
  if (comms_.empty()) return;
  check(api_->group_start(), "ncclGroupStart");
  for (std::size_t i = 0; i < comms_.size(); ++i) {
    contexts_[i]->enter();
    check(f(i, comms_[i], contexts_[i]->stream), call);
  }
  check(api_->group_end(), "ncclGroupEnd");
}

void CudaGroup::all_reduce(std::span<DeviceSums> sums) {
  collective("ncclAllReduce", [&](std::size_t i, ncclComm_t comm, cudaStream_t stream) {
    return api_->all_reduce(sums[i].data(), sums[i].data(), static_cast<std::size_t>(sums[i].size()),
                            ncclDouble, ncclSum, comm, stream);
  });
}

void CudaGroup::broadcast_rows(std::span<DeviceMatrix> x, Eigen::Index first, Eigen::Index count,
                               int root) {
  collective("ncclBroadcast", [&](std::size_t i, ncclComm_t comm, cudaStream_t stream) {
    float* rows = x[i].data() + first * x[i].cols();
    return api_->broadcast(rows, rows, static_cast<std::size_t>(count * x[i].cols()), ncclFloat,
                           root, comm, stream);
  });
}

}  // namespace

std::unique_ptr<DeviceGroup> make_device_group(Context& first, const std::vector<int>& others) {
  return std::make_unique<CudaGroup>(first, others);
}

}  // namespace ptq::cuda
