#pragma once
// The thread count of a ptq run.
//
// Policy (see algorithms/parallel_gemm.hpp and docs/forward.md): OpenBLAS
// always runs single-threaded; all parallelism is oneTBB over fixed-size
// chunks whose boundaries do not depend on the thread count, and every
// reduction adds its partials in a fixed order. So outputs are bit-identical
// for any thread count.
#include <tbb/global_control.h>

#include <memory>

namespace ptq {

// For its lifetime, TBB uses at most `threads` threads (0 = its default, all
// cores; InputError when negative). Also switches OpenBLAS to one thread (for good: see the
// policy). Create one in a driver, around the work.
class ThreadScope {
 public:
  explicit ThreadScope(int threads);
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  std::unique_ptr<tbb::global_control> tbb_limit_;
};

}  // namespace ptq
