// Writing .safetensors: deterministic bytes, never a half-written file.
//
// Layout: u64 header length, JSON header padded with spaces to a multiple of 8
// (so the data section starts 8-byte aligned), then the tensors back to back
// in the given order. Tensors are contiguous because Hugging Face's reader
// rejects gaps between tensors; each one therefore starts 8-byte aligned
// whenever the tensors before it have sizes that are multiples of 8 (true for
// LLM weight matrices).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "io/error.hpp"
#include "io/output_path.hpp"
#include "io/safetensors.hpp"

namespace ptq {

namespace {

constexpr std::size_t kAlignment = 8;

std::string build_header(std::span<const TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;  // std::map: sorted keys
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    PTQ_ASSERT(names.insert(t.name).second);  // duplicate names are a caller bug
    std::uint64_t bytes = dtype_size(t.dtype);
    for (auto d : t.shape) {
      PTQ_ASSERT(d >= 0);
      bytes *= static_cast<std::uint64_t>(d);
    }
    PTQ_ASSERT(bytes == t.bytes.size());
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((kAlignment - text.size() % kAlignment) % kAlignment, ' ');
  return text;
}

void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw input_error(path.string(), "a writable file", std::strerror(errno));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(tensors, metadata);
  const std::uint64_t header_length = header.size();  // written little-endian (host order)

  OutputFile file(path, "");
  const int fd = ::open(file.temp_path().c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw input_error(path.string(), "a file that can be written", std::strerror(errno));
  try {
    write_all(fd, &header_length, sizeof header_length, path);
    write_all(fd, header.data(), header.size(), path);
    for (const auto& t : tensors) write_all(fd, t.bytes.data(), t.bytes.size(), path);
    if (::fsync(fd) != 0)
      throw input_error(path.string(), "a file synced to disk", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) {
    throw input_error(path.string(), "a file that can be written", std::strerror(errno));
  }
  file.commit();
}

}  // namespace ptq
