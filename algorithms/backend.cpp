#include "algorithms/backend.hpp"

#include <atomic>

namespace ptq {

namespace {
// Read from TBB worker threads, set by the driver's thread before the work.
std::atomic<MatrixBackend*> active{nullptr};
}  // namespace

MatrixBackend* active_backend() { return active.load(std::memory_order_acquire); }

BackendScope::BackendScope(MatrixBackend* backend)
    : previous_(active.exchange(backend, std::memory_order_acq_rel)) {}

BackendScope::~BackendScope() { active.store(previous_, std::memory_order_release); }

}  // namespace ptq
