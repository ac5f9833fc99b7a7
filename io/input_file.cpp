#include "io/input_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "io/error.hpp"

namespace ptq {

std::string file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

std::ifstream open_input_file(const std::filesystem::path& path, const std::string& expected) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw input_error(path.string(), expected, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw input_error(path.string(), expected, file_type_name(st.st_mode));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error(path.string(), expected, std::strerror(errno));
  return in;
}

}  // namespace ptq
