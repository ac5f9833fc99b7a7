// `ptq quantize --stats`: GPTQ from cached per-source statistics of tiny
// (4 generic + 4 domain windows) against gptq_quantize on Hessians the test
// forms itself from the same file, bit for bit; and the refusals of bad input.
#include "pipeline/quantize/quantize_from_stats.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "algorithms/gptq.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Exit code and stderr of `ptq quantize --model tiny ARGS`.
std::pair<int, std::string> quantize_cli(const std::string& args,
                                         const std::filesystem::path& dir) {
  const auto err = dir / "err.txt";
  const std::string cmd = test::ptq_binary().string() + " quantize --model " + tiny().string() +
                          " " + args + " >/dev/null 2>" + err.string();
  return {WEXITSTATUS(std::system(cmd.c_str())), read_text(err)};
}

Recipe w3_g128() {
  Recipe r;
  r.method = Method::Gptq;
  r.spec.bits = 3;
  set_granularity(r.spec, "128", "test");
  return r;
}

// The source's own 2 x X^T X / tokens, formed here, not through mix_stats.
Eigen::MatrixXd own_hessian(const InputStats& s) {
  return (s.xtx / static_cast<double>(s.tokens)) * 2.0;
}

void expect_same_bits(const QuantizedMatrix& got, const QuantizedMatrix& want,
                      const std::string& what) {
  EXPECT_TRUE(got.codes == want.codes) << what;
  EXPECT_TRUE(got.scales == want.scales) << what;
  EXPECT_TRUE(got.zeros == want.zeros) << what;
  EXPECT_EQ(got.g_idx, want.g_idx) << what;
}

class QuantizeFromStats : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(test::temp_dir("from-stats-" + std::to_string(getpid())));
    const std::string cmd =
        test::ptq_binary().string() + " calibrate --model " + tiny().string() +
        " --calib generic=" + test::fixture("goldens/tiny/calib_generic.ids").string() +
        ":0.5 --calib domain=" + test::fixture("goldens/tiny/calib_domain.ids").string() +
        ":0.5 --samples 8 --out " + stats_file().string() + " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path stats_file() { return *dir_ / "stats.h5"; }
  static std::filesystem::path* dir_;
};
std::filesystem::path* QuantizeFromStats::dir_ = nullptr;

TEST_F(QuantizeFromStats, OneSourceOfWeightOneIsGptqOnItsHessian) {
  const Model model = Model::open(tiny());
  const CalibrationStats stats = load_calibration_stats(stats_file());
  ASSERT_EQ(stats.info.sources, (std::vector<std::string>{"generic", "domain"}));
  const Recipe recipe = w3_g128();
  const std::vector<double> weights = {1.0, 0.0};
  const auto got = quantize_from_stats(model, recipe, stats, weights);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(model.num_layers() * linear_role_count));
  for (const auto& q : got) {
    const auto h = own_hessian(stats.at(q.layer, linear_spec(q.role).input, 0));
    const auto want =
        gptq_quantize(model.load_block(q.layer).weight(q.role), h, recipe.gptq_config());
    expect_same_bits(
        std::get<QuantizedMatrix>(q.weight), want.quantized,
        "layer " + std::to_string(q.layer) + " " + std::string(linear_role_name(q.role)));
  }
}

TEST_F(QuantizeFromStats, CliMix70To30IsGptqOnTheHandMixedHessian) {
  const auto out = *dir_ / "mix70";
  const auto [code, err] = quantize_cli(
      "--method gptq --bits 3 --group 128 --stats " + stats_file().string() +
          " --mix generic=70 --mix domain=30 --format dequantized --out " + out.string(),
      *dir_);
  ASSERT_EQ(code, 0) << err;
  const Model model = Model::open(tiny());
  const CalibrationStats stats = load_calibration_stats(stats_file());
  const H5Reader file(out / "quantized.h5");
  for (int layer = 0; layer < model.num_layers(); ++layer)
    for (LinearRole role : all_linear_roles) {
      const LinearInput input = linear_spec(role).input;
      const auto& g = stats.at(layer, input, 0);
      const auto& d = stats.at(layer, input, 1);
      const Eigen::MatrixXd h = 2.0 * (0.7 * (g.xtx / static_cast<double>(g.tokens)) +
                                       0.3 * (d.xtx / static_cast<double>(d.tokens)));
      const auto want =
          gptq_quantize(model.load_block(layer).weight(role), h, w3_g128().gptq_config());
      expect_same_bits(
          std::get<QuantizedMatrix>(read_quantized_linear(file, {layer, role}).weight),
          want.quantized,
          "layer " + std::to_string(layer) + " " + std::string(linear_role_name(role)));
    }
  EXPECT_NE(read_text(out / "README.md").find("non-sequential approximation"), std::string::npos);
  EXPECT_NE(read_text(out / "run.json").find("\"calibration_stats\""), std::string::npos);
}

TEST_F(QuantizeFromStats, SameBytesWhateverTheThreadCount) {
  for (const char* threads : {"1", "2"}) {
    const auto [code, err] =
        quantize_cli("--method gptq --bits 3 --group 128 --stats " + stats_file().string() +
                         " --threads " + threads + " --out " + (*dir_ / "t").string() + threads,
                     *dir_);
    ASSERT_EQ(code, 0) << err;
  }
  for (const char* file : {"quantized.h5", "model.safetensors", "README.md"})
    EXPECT_EQ(read_text(*dir_ / "t1" / file), read_text(*dir_ / "t2" / file)) << file;
}

TEST_F(QuantizeFromStats, BadInputIsRefusedByName) {
  const std::string base =
      "--bits 3 --stats " + stats_file().string() + " --out " + (*dir_ / "refused").string() + " ";
  const std::pair<std::string, std::string> cases[] = {
      {"--method gptq --mix web=1", "--mix web: expected a source of"},
      {"--method gptq --mix generic=-1", "expected a finite weight >= 0 for source generic"},
      {"--method gptq --mix generic=0 --mix domain=0",
       "expected at least one source of non-zero weight"},
      {"--method gptq --mix generic=x", "expected a number after '='"},
      {"--method gptq --calib-ids " + test::fixture("goldens/tiny/calib_generic.ids").string(),
       "--stats: expected cached"},
      {"--method rtn", "--stats: expected a method that uses input statistics"},
  };
  for (const auto& [args, message] : cases) {
    const auto [code, err] = quantize_cli(base + args, *dir_);
    EXPECT_NE(code, 0) << args;
    EXPECT_NE(err.find(message), std::string::npos) << args << " gave: " << err;
  }
  EXPECT_FALSE(std::filesystem::exists(*dir_ / "refused"));
}

TEST_F(QuantizeFromStats, StatisticsOfAnotherModelOrShapeAreRefused) {
  const Model model = Model::open(tiny());
  const CalibrationStats good = load_calibration_stats(stats_file());
  auto message_of = [&](const CalibrationStats& s) -> std::string {
    try {
      check_stats_fit(s, model, stats_file());
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message_of(good), "");
  CalibrationStats other = good;
  other.info.source_model_hash = "0123456789abcdef";
  EXPECT_NE(message_of(other).find("source_model_hash: expected statistics of"), std::string::npos);
  CalibrationStats fewer = good;
  fewer.layers.pop_back();
  EXPECT_NE(message_of(fewer).find("expected 4 layers, found 3"), std::string::npos)
      << message_of(fewer);
  CalibrationStats narrow = good;
  narrow.layers[2][static_cast<std::size_t>(LinearInput::mlp_hidden)][1] = InputStats(256);
  EXPECT_NE(
      message_of(narrow).find("layers/2/mlp_hidden/domain: expected 768 input features, found 256"),
      std::string::npos)
      << message_of(narrow);
}

}  // namespace
}  // namespace ptq
