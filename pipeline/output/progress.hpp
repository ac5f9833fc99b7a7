#pragma once
// Progress on stderr: a redrawn bar with ETA on a terminal, plain lines
// (about every 10 %) when stderr is a file or a pipe.
#include <chrono>
#include <cstdint>
#include <string>

namespace ptq {

// Peak resident set size of this process so far (getrusage ru_maxrss), in bytes.
std::uint64_t peak_rss_bytes();
// Restarts the peak that window_peak_rss_bytes() reports (Linux's
// /proc/self/clear_refs); false where the system does not allow it.
bool restart_peak_rss();
// The peak resident set size since the last restart_peak_rss() (VmHWM), in
// bytes; peak_rss_bytes() where /proc/self/status cannot be read.
std::uint64_t window_peak_rss_bytes();

class ProgressReporter {
 public:
  explicit ProgressReporter(std::string label);
  // `done` of `total` units finished.
  void update(long done, long total);

 private:
  std::string label_;
  bool terminal_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ptq
