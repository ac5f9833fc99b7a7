#pragma once
// Content hashes recorded in outputs (model, calibration data) so a result can
// be traced to its inputs. FNV-1a 64: fast, stable across platforms; not for security.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace ptq {

class Fnv1a64 {
 public:
  void update(std::span<const std::byte> bytes);
  void update(std::string_view text) { update(std::as_bytes(std::span(text.data(), text.size()))); }
  std::uint64_t digest() const { return state_; }
  std::string hex() const;  // 16 lowercase hex digits

 private:
  std::uint64_t state_ = 0xcbf29ce484222325ULL;  // FNV offset basis
};

// Hash of a file's bytes, or of a folder's regular files (relative names and bytes, sorted by name).
std::string hash_path(const std::filesystem::path& path);

}  // namespace ptq
