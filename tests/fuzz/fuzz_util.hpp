#pragma once
// What every fuzz target shares. ptq's loaders take paths, so an input is
// written to a folder of the process's own first; an input that stands for a
// folder (config.json beside model.safetensors, ...) holds its files joined by
// a separator. An InputError is the one acceptable way for a loader to refuse
// an input: anything else (a crash, a sanitizer report, another exception, a
// failed oracle) reaches libFuzzer as a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/error.hpp"

namespace ptq::fuzz {

// RAM-backed /dev/shm when there is one (inputs are rewritten at every run),
// one folder per process so parallel fuzzers never share files; removed at exit.
inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path;
    Dir() {
      const std::filesystem::path shm = "/dev/shm";
      const auto base =
          std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path();
      path = base / ("ptq-fuzz-" + std::to_string(::getpid()));
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// `bytes` as the file `name` of the scratch folder (replacing an earlier input's).
inline std::filesystem::path write_file(const std::string& name, std::string_view bytes) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// The file `name` holding `part`, or no such file when the input lacks that part.
inline std::filesystem::path put_file(const std::string& name,
                                      std::optional<std::string_view> part) {
  if (part) return write_file(name, *part);
  std::filesystem::remove(scratch_dir() / name);
  return scratch_dir() / name;
}

// NUL bytes never occur in JSON or text, and the binary files of the seeds
// (small safetensors files) do not hold this sequence.
inline constexpr char kSeparatorBytes[] = "\0--ptq-fuzz-next-file--";
inline constexpr std::string_view kFileSeparator{kSeparatorBytes, sizeof kSeparatorBytes};

// The first `count` files of a multi-file input, the last running to the end
// of the input; nullopt for the files the input lacks.
inline std::vector<std::optional<std::string_view>> split_files(std::string_view input,
                                                                std::size_t count) {
  std::vector<std::optional<std::string_view>> files(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t end = i + 1 == count ? std::string_view::npos : input.find(kFileSeparator);
    files[i] = input.substr(0, end);
    if (end == std::string_view::npos) break;
    input.remove_prefix(end + kFileSeparator.size());
  }
  return files;
}

// The inverse of split_files, for the seed maker.
inline std::string join_files(std::span<const std::string> files) {
  std::string out;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (i > 0) out += kFileSeparator;
    out += files[i];
  }
  return out;
}

// Runs `load`: a refusal with InputError is the expected outcome of most inputs.
// PTQ_FUZZ_VERBOSE=1 prints each refusal (to see why a seed does not load).
template <class F>
void refuse_cleanly(F&& load) {
  static const bool verbose = std::getenv("PTQ_FUZZ_VERBOSE") != nullptr;
  try {
    load();
  } catch (const InputError& e) {
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
}

// An oracle of a target did not hold: libFuzzer reports the abort with the input.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "ptq fuzz oracle failed: %s\n", what.c_str());
  std::abort();
}

// Fixture files (../shared/fixtures), for targets that need a fixed companion
// file such as a tokenizer.
inline std::filesystem::path fixture(const std::string& relative) {
  return std::filesystem::path(PTQ_SHARED_DIR) / "fixtures" / relative;
}

}  // namespace ptq::fuzz
