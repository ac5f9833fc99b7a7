#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/error.hpp"

namespace ptq {

std::span<const std::byte> map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw input_error(path.string(), "a readable file", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw input_error(path.string(), "a regular file", "something else");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return {};
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping stays valid without the descriptor
  if (map == MAP_FAILED) {
    throw input_error(path.string(), "a file that can be memory-mapped", std::strerror(err));
  }
  return {static_cast<const std::byte*>(map), size};
}

void unmap_file(std::span<const std::byte> map) {
  if (!map.empty()) ::munmap(const_cast<std::byte*>(map.data()), map.size());
}

}  // namespace ptq
