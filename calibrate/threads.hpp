#pragma once
// Thread counts for OpenBLAS and oneTBB, set together.
#include <tbb/global_control.h>

#include <memory>

namespace ptq {

// For its lifetime, OpenBLAS uses `threads` threads and TBB at most `threads`
// (0 = leave both at their defaults). Create one in a driver, around the work.
class ThreadScope {
 public:
  explicit ThreadScope(int threads);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int previous_blas_threads_ = 0;
  std::unique_ptr<tbb::global_control> tbb_limit_;
};

// OpenBLAS single-threaded for its lifetime, for GEMMs issued from inside TBB
// tasks (a multithreaded BLAS call there would oversubscribe the cores).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace ptq
