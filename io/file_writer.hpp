#pragma once
// One file written with plain POSIX calls: every write completes or throws an
// InputError naming the file (EINTR retried, short writes continued). Used by
// the writers that stream large outputs (GGUF, safetensors), which place it at
// an OutputFile's temporary path.
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace ptq {

class FileWriter {
 public:
  explicit FileWriter(std::filesystem::path path);  // created or truncated
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void write_all(const void* data, std::size_t size);
  // Zeros from `written` up to the next multiple of `alignment`.
  void pad_to(std::uint64_t written, std::uint64_t alignment);
  // Overwrites bytes already written, at `offset` (a header filled in last).
  void write_at(std::uint64_t offset, const void* data, std::size_t size);
  // Appends the whole of the file `from`, without passing it through memory.
  void append_file(const std::filesystem::path& from);
  void sync_and_close();

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace ptq
