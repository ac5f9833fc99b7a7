#pragma once
// fuzz_make_seeds: small valid inputs for every fuzz target, made from the
// fixtures with ptq's own writers (bench/fuzz.sh runs it; PTQ_FUZZ builds only).
// Small matters: libFuzzer mutates whole inputs, so a shrunk tokenizer or a
// GGUF with a few tensors is fuzzed thousands of times faster than the file
// it came from, and reaches the same code.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace ptq::fuzz {

class Seeds {
 public:
  explicit Seeds(std::filesystem::path out) : out_(std::move(out)) {}

  // The seed `name` of `target`: out/<target>/<name>.
  void add(const std::string& target, const std::string& name, std::string_view bytes) const {
    std::filesystem::create_directories(out_ / target);
    std::ofstream(out_ / target / name, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // A folder for files the seeds are made from (a packed folder, an HDF5 file).
  std::filesystem::path work(const std::string& name) const {
    const auto dir = out_ / ".work" / name;
    std::filesystem::create_directories(dir);
    return dir;
  }

 private:
  std::filesystem::path out_;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Seeds of the io/ parsers' targets (seeds_io.cpp) and of the formats' (seeds_formats.cpp).
void add_io_seeds(const Seeds& seeds);
void add_tokenizer_seeds(const Seeds& seeds);
void add_gguf_seeds(const Seeds& seeds);
void add_formats_seeds(const Seeds& seeds);

}  // namespace ptq::fuzz
