#include "pipeline/batch/claims.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace ptq {
namespace {

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// Creates `file` only if it does not exist, holding this worker's id.
bool create_exclusive(const std::filesystem::path& file) {
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return false;
  const std::string id = worker_id() + "\n";
  const bool ok = write(fd, id.data(), id.size()) == static_cast<ssize_t>(id.size());
  close(fd);
  return ok;
}

// Whether the worker that wrote `file` is gone: on this host, whether its
// process still exists (however long it goes without a heartbeat); another
// host's, no heartbeat for `timeout`.
bool holder_dead(const std::filesystem::path& file, std::chrono::seconds timeout) {
  std::ifstream in(file);
  std::string host;
  long pid = 0;
  in >> host >> pid;
  if (host == host_name() && pid > 0) return kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  std::error_code ec;
  const auto beat = std::filesystem::last_write_time(file, ec);
  if (ec) return false;  // gone meanwhile: its holder finished
  return std::filesystem::file_time_type::clock::now() - beat > timeout;
}

}  // namespace

std::string worker_id() { return host_name() + " " + std::to_string(getpid()); }

std::unique_ptr<JobClaim> JobClaim::try_take(const std::filesystem::path& claim_file,
                                             std::chrono::seconds timeout) {
  if (create_exclusive(claim_file)) return std::make_unique<JobClaim>(claim_file, false, timeout);
  if (!holder_dead(claim_file, timeout)) return nullptr;
  // Rename the stale claim to a name of our own: only one worker's rename finds it.
  const auto stale = claim_file.string() + ".stale-" + std::to_string(getpid());
  if (std::rename(claim_file.c_str(), stale.c_str()) != 0) return nullptr;
  if (!holder_dead(stale, timeout)) {
    // Another worker took it over between our look and our rename: give it back.
    std::error_code ec;  // fails where a third worker holds it by now: fine
    std::filesystem::create_hard_link(stale, claim_file, ec);
    std::filesystem::remove(stale);
    return nullptr;
  }
  std::filesystem::remove(stale);
  if (!create_exclusive(claim_file)) return nullptr;
  return std::make_unique<JobClaim>(claim_file, true, timeout);
}

JobClaim::JobClaim(std::filesystem::path file, bool took_over, std::chrono::seconds timeout)
    : file_(std::move(file)), took_over_(took_over) {
  const auto every = std::max(std::chrono::seconds(1), timeout / 4);
  heartbeat_ = std::thread([this, every] { beat(every); });
}

void JobClaim::beat(std::chrono::seconds every) {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, every, [this] { return stop_; })) {
    std::error_code ec;
    std::filesystem::last_write_time(file_, std::filesystem::file_time_type::clock::now(), ec);
  }
}

JobClaim::~JobClaim() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  heartbeat_.join();
  std::error_code ec;
  std::filesystem::remove(file_, ec);
}

}  // namespace ptq
