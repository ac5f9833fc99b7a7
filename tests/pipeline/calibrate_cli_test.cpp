// `ptq calibrate` on tiny with a 2-source mix: file layout, per-source Hessians
// against an independent double-precision X^T X of the float forward, and
// mix_stats of the two sources against a one-source run over the same windows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>

#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/recipe/provenance.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int kSamples = 8;            // 0.7 / 0.3 of 8 -> 6 generic + 2 domain windows
constexpr int kSeqLen = 512;
constexpr int kGenericWindows = 6;
constexpr double kStatsTolerance = 2e-5;  // relative to the largest entry: float forward, other batching

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

void calibrate(const std::string& calib_args, const std::filesystem::path& out, const std::string& extra = "") {
  const std::string cmd = test::ptq_binary().string() + " calibrate --model " + tiny().string() + " " + calib_args +
                          " --samples " + std::to_string(kSamples) + " --out " + out.string() + " " + extra +
                          " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

std::string mix_args() {
  return "--calib generic=" + test::fixture("goldens/tiny/calib_generic.ids").string() + ":0.7 --calib domain=" +
         test::fixture("goldens/tiny/calib_domain.ids").string() + ":0.3";
}

// Relative max difference of two arrays, scaled by the reference's largest magnitude.
template <class A, class B>
double relative_max_diff(const A& got, const B& want) {
  return double((got - want).cwiseAbs().maxCoeff()) / std::max(double(want.cwiseAbs().maxCoeff()), 1e-30);
}

class CalibrateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test in its own process, possibly in parallel: one folder per process.
    dir_ = new std::filesystem::path(test::temp_dir("calibrate-" + std::to_string(getpid())));
    calibrate(mix_args(), *dir_ / "mix.h5");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path* dir_;
};
std::filesystem::path* CalibrateCli::dir_ = nullptr;

TEST_F(CalibrateCli, FileHasGroupsAndAttributes) {
  H5Reader in(*dir_ / "mix.h5");
  EXPECT_EQ(in.string_attribute("/", "format"), "ptq-calibration");
  EXPECT_EQ(in.int_attribute("/", "format_version"), kCalibStatsFormatVersion);
  EXPECT_EQ(in.string_attribute("/", "source_model_hash"), model_hash(tiny()));
  EXPECT_EQ(in.string_attribute("/", "sources"), "generic,domain");
  EXPECT_EQ(in.int_attribute("calibration", "samples"), kSamples);
  EXPECT_EQ(in.int_attribute("calibration", "seqlen"), kSeqLen);
  EXPECT_EQ(in.int_attribute("calibration", "seed"), 0);
  EXPECT_EQ(in.string_attribute("calibration/sources/generic", "content_hash").size(), 16u);
  EXPECT_EQ(in.int_attribute("calibration/sources/generic", "windows"), kGenericWindows);
  EXPECT_EQ(in.int_attribute("calibration/sources/domain", "windows"), kSamples - kGenericWindows);
  const auto source = in.read<std::int32_t>("calibration/window_source");
  EXPECT_EQ(source, (std::vector<std::int32_t>{0, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(in.children("layers"), (std::vector<std::string>{"0", "1", "2", "3"}));
  for (LinearInput input : all_linear_inputs)
    for (const char* s : {"generic", "domain"}) {
      const std::string g = "layers/3/" + std::string(linear_input_name(input)) + "/" + s;
      EXPECT_TRUE(in.has(g + "/xtx")) << g;
      EXPECT_TRUE(in.has(g + "/magnitudes")) << g;
    }
}

// Independent reference: X of every Linear input from the float forward
// (one source's windows at once), X^T X formed in double.
class DoubleGram : public LinearObserver {
 public:
  std::map<std::pair<int, int>, Eigen::MatrixXd> xtx;  // (layer, input)
  std::map<std::pair<int, int>, float> absmax;
  void observe(int layer, std::span<const LinearRole> roles, const MatrixRM& x) override {
    const std::pair key{layer, static_cast<int>(linear_spec(roles.front()).input)};
    const Eigen::MatrixXd xd = x.cast<double>();
    xtx[key] = xd.transpose() * xd;
    absmax[key] = x.cwiseAbs().maxCoeff();
  }
};

TEST_F(CalibrateCli, PerSourceHessiansEqualIndependentXtX) {
  const CalibrationStats stats = load_calibration_stats(*dir_ / "mix.h5");
  ASSERT_EQ(stats.info.sources, (std::vector<std::string>{"generic", "domain"}));
  const Model model = Model::open(tiny());
  BlockSource blocks(model, std::size_t{1} << 30);
  const std::pair<const char*, int> sources[] = {{"calib_generic.ids", kGenericWindows},
                                                 {"calib_domain.ids", kSamples - kGenericWindows}};
  for (int s = 0; s < 2; ++s) {
    auto ids = read_ids(test::fixture(std::string("goldens/tiny/") + sources[s].first));
    ids.resize(static_cast<std::size_t>(sources[s].second) * kSeqLen);  // the first windows, as .ids sources give
    DoubleGram gram;
    final_hidden(model, blocks, ids, kSeqLen, observing(&gram));
    for (int layer = 0; layer < model.num_layers(); ++layer)
      for (LinearInput input : all_linear_inputs) {
        const InputStats& got = stats.at(layer, input, s);
        const std::pair key{layer, static_cast<int>(input)};
        EXPECT_EQ(got.tokens, static_cast<std::int64_t>(ids.size()));
        EXPECT_LT(relative_max_diff(got.xtx, gram.xtx.at(key)), kStatsTolerance)
            << "layer " << layer << " " << linear_input_name(input) << " source " << s;
        EXPECT_NEAR(got.absmax.maxCoeff(), gram.absmax.at(key), kStatsTolerance * gram.absmax.at(key));
        EXPECT_LT(relative_max_diff(got.sum_sq, gram.xtx.at(key).diagonal()), kStatsTolerance);
      }
  }
}

TEST_F(CalibrateCli, MixWithTokenSharesEqualsOneSourceRun) {
  // One .ids source holding the same 8 windows as the mix, in the same order.
  auto pooled = read_ids(test::fixture("goldens/tiny/calib_generic.ids"));
  pooled.resize(static_cast<std::size_t>(kGenericWindows) * kSeqLen);
  auto domain = read_ids(test::fixture("goldens/tiny/calib_domain.ids"));
  pooled.insert(pooled.end(), domain.begin(), domain.begin() + (kSamples - kGenericWindows) * kSeqLen);
  write_ids(*dir_ / "pooled.ids", pooled);
  calibrate("--calib-ids " + (*dir_ / "pooled.ids").string(), *dir_ / "pooled.h5");

  const CalibrationStats mix = load_calibration_stats(*dir_ / "mix.h5");
  const CalibrationStats one = load_calibration_stats(*dir_ / "pooled.h5");
  for (int layer = 0; layer < 4; ++layer)
    for (LinearInput input : all_linear_inputs) {
      const InputStats* sources[] = {&mix.at(layer, input, 0), &mix.at(layer, input, 1)};
      const double shares[] = {double(sources[0]->tokens), double(sources[1]->tokens)};
      const MixedStats mixed = mix_stats(sources, shares);
      const InputStats& want = one.at(layer, input, 0);
      EXPECT_LT(relative_max_diff(mixed.mean_xtx, want.mean_xtx()), kStatsTolerance);
      EXPECT_LT(relative_max_diff(mixed.mean_square, want.mean_square()), kStatsTolerance);
      EXPECT_LT(relative_max_diff(mixed.absmax, want.absmax), kStatsTolerance);
      // One sketch bucket is 1.6 % wide; a value near a boundary may cross it.
      const double q = mixed_quantile(sources, shares, 0.999);
      EXPECT_NEAR(q, want.magnitudes.quantile(0.999), 0.02 * q);
    }
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(CalibrateCli, SameInputsGiveSameBytes) {
  calibrate(mix_args(), *dir_ / "again.h5");
  EXPECT_TRUE(file_bytes(*dir_ / "again.h5") == file_bytes(*dir_ / "mix.h5"));
}

// Fails today: the float forward / X^T X use multi-threaded BLAS whose sums
// depend on the thread count (being reworked in calibrate/block.cpp and
// calibrate/input_stats.cpp). Enable once that work lands.
TEST_F(CalibrateCli, OutputBytesDoNotDependOnThreads) {
  calibrate(mix_args(), *dir_ / "one_thread.h5", "--threads 1");
  EXPECT_TRUE(file_bytes(*dir_ / "one_thread.h5") == file_bytes(*dir_ / "mix.h5"));
}

}  // namespace
}  // namespace ptq
