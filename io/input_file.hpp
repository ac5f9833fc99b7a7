#pragma once
// Opening the files ptq reads. An input must be a regular file (symbolic links
// followed): a FIFO, device or socket is refused before a byte is read, since
// ptq hashes an input and then reads it again, and an endless stream
// (/dev/zero, a pipe fed forever) would grow memory without bound.
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace ptq {

// "a regular file", "a folder", "a FIFO (named pipe)", "a character device", ...
std::string file_type_name(mode_t mode);

// The opened file; InputError naming `path`, `expected` and what is there
// (no such file, a folder, a FIFO, permission denied, ...) otherwise.
std::ifstream open_input_file(const std::filesystem::path& path, const std::string& expected);

}  // namespace ptq
