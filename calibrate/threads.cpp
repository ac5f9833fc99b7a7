#include "calibrate/threads.hpp"

#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {

ThreadScope::ThreadScope(int threads) {
  PTQ_ASSERT(threads >= 0);
  force_single_threaded_blas();
  if (threads == 0) return;
  tbb_limit_ = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                     static_cast<std::size_t>(threads));
}

}  // namespace ptq
