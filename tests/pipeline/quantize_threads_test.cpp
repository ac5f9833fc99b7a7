// `ptq quantize` end to end: the same inputs, recipe and seed give
// byte-identical outputs with one or two threads (run.json holds timings and
// may differ).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "test_paths.hpp"

namespace ptq {
namespace {

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// GPTQ w4 g128 act-order on the example tiny checkpoint, 16 calibration windows.
std::filesystem::path quantize_with_threads(int threads) {
  const auto out = test::temp_dir("threads" + std::to_string(threads)) / "out";
  const std::string cmd =
      test::ptq_binary().string() + " quantize --model " +
      (test::source_dir() / "examples/models/tiny").string() + " --out " + out.string() +
      " --method gptq --bits 4 --group 128 --act-order --calib-ids " +
      test::fixture("goldens/tiny/calib_generic.ids").string() +
      " --samples 16 --threads " + std::to_string(threads) + " >/dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return out;
}

TEST(QuantizeCli, GptqOutputsAreByteIdenticalForOneOrTwoThreads) {
  const auto one = quantize_with_threads(1);
  const auto two = quantize_with_threads(2);
  for (const char* name : {"model.safetensors", "quantized.h5", "README.md"}) {
    const std::string a = file_bytes(one / name);
    ASSERT_FALSE(a.empty()) << name;
    EXPECT_TRUE(a == file_bytes(two / name)) << name << " differs between --threads 1 and 2";
  }
}

}  // namespace
}  // namespace ptq
