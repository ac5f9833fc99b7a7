#include "io/file_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "io/error.hpp"

namespace ptq {
namespace {

constexpr std::size_t kPadChunk = 4096;  // zeros per write: an alignment may be up to 2^31

}  // namespace

FileWriter::FileWriter(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw input_error(path_.string(), "a file that can be created", std::strerror(errno));
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write_all(const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw input_error(path_.string(), "a writable file", std::strerror(errno));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void FileWriter::pad_to(std::uint64_t written, std::uint64_t alignment) {
  static const std::array<char, kPadChunk> zeros{};
  for (std::uint64_t pad = (alignment - written % alignment) % alignment; pad > 0;) {
    const auto n = std::min<std::uint64_t>(pad, zeros.size());
    write_all(zeros.data(), n);
    pad -= n;
  }
}

void FileWriter::write_at(std::uint64_t offset, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw input_error(path_.string(), "a writable file", std::strerror(errno));
    p += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
}

void FileWriter::append_file(const std::filesystem::path& from) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw input_error(from.string(), "a readable file", std::strerror(errno));
  struct stat st {};
  if (::fstat(in, &st) != 0) {
    const int err = errno;
    ::close(in);
    throw input_error(from.string(), "a readable file", std::strerror(err));
  }
  auto left = static_cast<std::uint64_t>(st.st_size);
  while (left > 0) {
    const ssize_t n = ::copy_file_range(in, nullptr, fd_, nullptr, left, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(in);
      throw input_error(path_.string(), "a copy of " + from.string(), std::strerror(err));
    }
    left -= static_cast<std::uint64_t>(n);
  }
  ::close(in);
}

void FileWriter::sync_and_close() {
  const int fd = std::exchange(fd_, -1);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw input_error(path_.string(), "a file synced to disk", std::strerror(err));
  }
  if (::close(fd) != 0) throw input_error(path_.string(), "a closed file", std::strerror(errno));
}

}  // namespace ptq
