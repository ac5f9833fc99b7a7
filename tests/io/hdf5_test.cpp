#include "io/hdf5.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include "io/error.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_sample(const std::filesystem::path& path) {
  H5Writer w(path);
  const std::vector<float> h = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::vector<std::uint8_t> codes = {0, 15, 7, 3};
  w.write<float>("layers/0/q/hessian", h, {2, 3});
  w.write<std::uint8_t>("layers/0/q/codes", codes, {4});
  w.set_attribute("/", "format_version", std::int64_t{1});
  w.set_attribute("/", "model", std::string("tiny"));
  w.set_attribute("layers/0/q/hessian", "damp", 0.01);
  w.commit();
}

TEST(Hdf5, RoundTripsDatasetsAndAttributes) {
  const auto file = test::temp_dir("h5") / "stats.h5";
  write_sample(file);
  H5Reader r(file);
  EXPECT_EQ(r.shape("layers/0/q/hessian"), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(r.read<float>("layers/0/q/hessian"), (std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f}));
  EXPECT_EQ(r.read<double>("layers/0/q/hessian")[2], 3.25);  // converted on read
  EXPECT_EQ(r.read<std::uint8_t>("layers/0/q/codes"), (std::vector<std::uint8_t>{0, 15, 7, 3}));
  EXPECT_EQ(r.int_attribute("/", "format_version"), 1);
  EXPECT_EQ(r.string_attribute("/", "model"), "tiny");
  EXPECT_DOUBLE_EQ(r.float_attribute("layers/0/q/hessian", "damp"), 0.01);
  EXPECT_EQ(r.children("layers/0/q"), (std::vector<std::string>{"codes", "hessian"}));
  EXPECT_FALSE(r.has("layers/1"));
  EXPECT_FALSE(r.has_attribute("/", "missing"));
}

TEST(Hdf5, SameContentGivesSameBytes) {
  const auto dir = test::temp_dir("h5");
  write_sample(dir / "a.h5");
  // HDF5 object timestamps have one-second resolution: a recorded creation
  // time (e.g. of an intermediate group) would differ after this pause.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write_sample(dir / "b.h5");
  EXPECT_EQ(slurp(dir / "a.h5"), slurp(dir / "b.h5"));
}

TEST(Hdf5, UncommittedWriterLeavesNoFile) {
  const auto dir = test::temp_dir("h5");
  {
    H5Writer w(dir / "never.h5");
    w.write<float>("x", std::vector<float>{1.0f}, {1});
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(Hdf5, CorruptFileIsRefusedByName) {
  const auto file = test::temp_dir("h5") / "not.h5";
  std::ofstream(file) << "this is not HDF5";
  try {
    H5Reader r(file);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected an HDF5 file"), std::string::npos) << e.what();
  }
}

TEST(Hdf5, CorruptMissingDatasetAndAttributeAreNamed) {
  const auto file = test::temp_dir("h5") / "s.h5";
  write_sample(file);
  H5Reader r(file);
  EXPECT_THROW(r.read<float>("layers/0/k/hessian"), InputError);
  try {
    (void)r.int_attribute("/", "seed");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("attribute seed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ptq
