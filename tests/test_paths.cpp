#include "test_paths.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

namespace ptq::test {

std::filesystem::path shared_dir() {
  const char* moved = std::getenv("PTQ_SHARED_DIR");
  return moved != nullptr && *moved != '\0' ? moved : PTQ_SHARED_DIR;
}

std::filesystem::path fixture(const std::string& relative) {
  return shared_dir() / "fixtures" / relative;
}

std::filesystem::path source_dir() { return PTQ_SOURCE_DIR; }

std::filesystem::path ptq_binary() { return PTQ_BINARY; }

std::filesystem::path temp_dir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
  auto dir = std::filesystem::temp_directory_path() / "ptq-tests" / (test + "." + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<float> read_f32(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v(std::filesystem::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run_ptq(const std::string& args, const std::filesystem::path& log) {
  const std::string command = ptq_binary().string() + " " + args + " > " + log.string() + " 2>&1";
  return WEXITSTATUS(std::system(command.c_str()));
}

}  // namespace ptq::test
