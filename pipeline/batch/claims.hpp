#pragma once
// Who runs a batch job. Several `ptq batch` workers (processes on one machine,
// or nodes sharing a file system) may run one JOBS.yaml at once; each job is
// claimed by one of them through a claim file created exclusively beside its
// output, "<out>/<model>/.<job>.claim" holding "host pid". The holder
// refreshes the file's time every few seconds (a heartbeat thread) while it
// works. A claim is taken over when its holder is dead: at once when it names
// a process of this host that no longer exists (a live one's never is), after
// `timeout` without a heartbeat when it names another host. Taking over renames the stale claim
// away first, so of two workers that both find it stale only one succeeds.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace ptq {

class JobClaim {
 public:
  // The claim on `claim_file` if this worker gets it, else null (another
  // live worker holds it).
  static std::unique_ptr<JobClaim> try_take(const std::filesystem::path& claim_file,
                                            std::chrono::seconds timeout);
  JobClaim(std::filesystem::path file, bool took_over, std::chrono::seconds timeout);
  JobClaim(const JobClaim&) = delete;
  JobClaim& operator=(const JobClaim&) = delete;
  ~JobClaim();  // stops the heartbeat and removes the claim file

  bool took_over() const { return took_over_; }  // from a dead worker

 private:
  void beat(std::chrono::seconds every);

  std::filesystem::path file_;
  bool took_over_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread heartbeat_;
};

// "host pid" of this process, as claims record it.
std::string worker_id();

}  // namespace ptq
