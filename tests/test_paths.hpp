#pragma once
// Where tests find their data: ../shared (fixtures, read-only), the source tree
// (committed test data, examples/) and the built ptq binary.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace ptq::test {

// ../shared beside the checkout, or $PTQ_SHARED_DIR where set (a copied
// test binary on another machine, e.g. the GPU machine).
std::filesystem::path shared_dir();
std::filesystem::path fixture(const std::string& relative);  // shared/fixtures/<relative>
std::filesystem::path source_dir();          // the repository root
std::filesystem::path ptq_binary();          // the built `ptq` executable
std::filesystem::path temp_dir(const std::string& name);  // fresh, empty, per test
std::vector<float> read_f32(const std::filesystem::path& path);  // raw little-endian float32 (*.f32)
std::string read_bytes(const std::filesystem::path& path);       // a whole file
// Runs `ptq ARGS` through the shell, stdout and stderr to `log`; its exit code.
int run_ptq(const std::string& args, const std::filesystem::path& log);

// A string parameter as a gtest name (folder names such as "phi3-longrope":
// '-' becomes '_'), for INSTANTIATE_TEST_SUITE_P's name generator.
struct FolderName {
  template <class Info>
  std::string operator()(const Info& info) const {
    std::string name = info.param;
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
  }
};

}  // namespace ptq::test
