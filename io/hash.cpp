#include "io/hash.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include "io/error.hpp"
#include "io/input_file.hpp"

namespace ptq {

void Fnv1a64::update(std::span<const std::byte> bytes) {
  constexpr std::uint64_t kPrime = 0x100000001b3ULL;
  for (std::byte b : bytes) state_ = (state_ ^ static_cast<std::uint64_t>(b)) * kPrime;
}

std::string Fnv1a64::hex() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(state_));
  return buf;
}

namespace {
void hash_file(const std::filesystem::path& path, Fnv1a64& h) {
  std::ifstream in = open_input_file(path, "a readable file");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(std::as_bytes(std::span(buf.data(), static_cast<std::size_t>(in.gcount()))));
  }
}
}  // namespace

std::string hash_path(const std::filesystem::path& path) {
  Fnv1a64 h;
  if (!std::filesystem::is_directory(path)) {
    hash_file(path, h);
    return h.hex();
  }
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(path))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    h.update(std::filesystem::relative(f, path).generic_string());
    hash_file(f, h);
  }
  return h.hex();
}

}  // namespace ptq
