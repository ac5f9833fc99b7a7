#include "calibrate/threads.hpp"

#include <string>

#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {

ThreadScope::ThreadScope(int threads) {
  if (threads < 0)
    throw input_error("--threads", "0 (all cores) or a positive count", std::to_string(threads));
  force_single_threaded_blas();
  if (threads == 0) return;
  tbb_limit_ = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                     static_cast<std::size_t>(threads));
}

}  // namespace ptq
