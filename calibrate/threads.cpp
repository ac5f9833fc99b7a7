#include "calibrate/threads.hpp"

#include <cblas.h>
#include <tbb/global_control.h>

#include "io/error.hpp"

namespace ptq {

ThreadScope::ThreadScope(int threads) : previous_blas_threads_(openblas_get_num_threads()) {
  PTQ_ASSERT(threads >= 0);
  if (threads == 0) return;
  openblas_set_num_threads(threads);
  tbb_limit_ = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                     static_cast<std::size_t>(threads));
}

ThreadScope::~ThreadScope() { openblas_set_num_threads(previous_blas_threads_); }

SingleThreadedBlas::SingleThreadedBlas() : previous_(openblas_get_num_threads()) {
  openblas_set_num_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() { openblas_set_num_threads(previous_); }

}  // namespace ptq
