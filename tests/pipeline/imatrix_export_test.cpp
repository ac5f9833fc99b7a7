// `ptq imatrix`: `ptq calibrate`'s statistics of tiny (8 windows, the 70/30
// generic/domain mix) as llama.cpp's GGUF imatrix. The mix's importance
// in_sum2 / count is 0.7 mean_g + 0.3 mean_d per column (means from the
// statistics file's sums), one source gives its own sums; llama-quantize
// accepts the file, and every tensor it writes from tiny-f16.gguf, and from
// tiny's Phi-3 layout (fused attn_qkv and ffn_up), is what ggml_quantize + pack
// give with the same importance (bit-exact).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "algorithms/ggml_grid.hpp"
#include "io/dtype.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "test_paths.hpp"
#include "tiny_as.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

constexpr int kSamples = 8;  // 0.7 / 0.3 of 8 -> 6 generic + 2 domain windows
constexpr int kSeqLen = 512;
constexpr double kMeanTolerance = 1e-6;  // relative: in_sum2 is float32

// llama.cpp's name of each Linear and the block input it reads (written out
// here, independently of imatrix_export.cpp's table).
const std::pair<const char*, LinearInput> kLinears[] = {
    {"attn_q", LinearInput::attention_in}, {"attn_k", LinearInput::attention_in},
    {"attn_v", LinearInput::attention_in}, {"attn_output", LinearInput::attention_out},
    {"ffn_gate", LinearInput::mlp_in},     {"ffn_up", LinearInput::mlp_in},
    {"ffn_down", LinearInput::mlp_hidden}};

int run(const std::string& args, const fs::path& log) {
  const std::string cmd = args + " > " + log.string() + " 2>&1";
  return WEXITSTATUS(std::system(cmd.c_str()));
}

std::string ptq() { return test::ptq_binary().string(); }

class ImatrixExport : public ::testing::Test {
 protected:
  // ctest runs each test in its own process, possibly in parallel: one folder per process.
  static void SetUpTestSuite() {
    dir_ = new fs::path(test::temp_dir("imatrix-" + std::to_string(getpid())));
    const std::string calib =
        " --calib generic=" + test::fixture("goldens/tiny/calib_generic.ids").string() +
        ":0.7 --calib domain=" + test::fixture("goldens/tiny/calib_domain.ids").string() + ":0.3";
    ASSERT_EQ(run(ptq() + " calibrate --model " + test::fixture("models/tiny").string() + calib +
                      " --samples " + std::to_string(kSamples) + " --out " + stats_file().string(),
                  *dir_ / "calibrate.log"),
              0)
        << test::read_bytes(*dir_ / "calibrate.log");
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path stats_file() { return *dir_ / "stats.h5"; }

  // ptq imatrix --stats stats.h5 [MIX] --out NAME.gguf
  static fs::path export_imatrix(const std::string& name, const std::string& mix = "") {
    const fs::path out = *dir_ / (name + ".gguf");
    const fs::path log = *dir_ / (name + ".log");
    EXPECT_EQ(run(ptq() + " imatrix --stats " + stats_file().string() + " " + mix + " --out " +
                      out.string(),
                  log),
              0)
        << test::read_bytes(log);
    return out;
  }
  static fs::path* dir_;
};
fs::path* ImatrixExport::dir_ = nullptr;

double mean_square(const InputStats& s, Eigen::Index j) {
  return s.sum_sq[j] / static_cast<double>(s.tokens);
}

TEST_F(ImatrixExport, MixImportanceIsTheWeightedMeanOfSquares) {
  const Imatrix imatrix = read_imatrix(export_imatrix("mix"));  // the file's weights: 0.7 / 0.3
  const CalibrationStats stats = load_calibration_stats(stats_file());
  EXPECT_EQ(imatrix.datasets, (std::vector<std::string>{"generic=0.7", "domain=0.3"}));
  EXPECT_EQ(imatrix.chunk_size, static_cast<std::uint32_t>(kSeqLen));
  EXPECT_EQ(imatrix.chunk_count, static_cast<std::uint32_t>(kSamples));
  // Each layer's seven Linears and Phi-3's attn_qkv (its fused ffn_up shares the name).
  EXPECT_EQ(imatrix.entries.size(), 4u * (std::size(kLinears) + 1));
  EXPECT_EQ(imatrix.entries.at("blk.2.attn_qkv.weight").in_sum2,
            imatrix.entries.at("blk.2.attn_q.weight").in_sum2);
  for (int layer = 0; layer < 4; ++layer) {
    for (const auto& [name, input] : kLinears) {
      const std::string tensor = "blk." + std::to_string(layer) + "." + name + ".weight";
      const ImatrixEntry& e = imatrix.entries.at(tensor);
      const InputStats& g = stats.at(layer, input, 0);
      const InputStats& d = stats.at(layer, input, 1);
      ASSERT_EQ(e.n_columns(), static_cast<std::size_t>(g.in_features())) << tensor;
      EXPECT_EQ(e.counts, std::vector<float>{static_cast<float>(g.tokens + d.tokens)}) << tensor;
      for (std::size_t j = 0; j < e.n_columns(); ++j) {
        const double want = 0.7 * mean_square(g, j) + 0.3 * mean_square(d, j);
        EXPECT_NEAR(e.in_sum2[j] / e.counts[0], want, kMeanTolerance * want) << tensor << " " << j;
      }
    }
  }
}

TEST_F(ImatrixExport, OneSourceGivesItsOwnSums) {
  const Imatrix imatrix = read_imatrix(export_imatrix("generic", "--mix generic=1"));
  const CalibrationStats stats = load_calibration_stats(stats_file());
  EXPECT_EQ(imatrix.datasets, std::vector<std::string>{"generic=1"});
  for (const auto& [name, input] : kLinears) {
    const ImatrixEntry& e = imatrix.entries.at("blk.2." + std::string(name) + ".weight");
    const InputStats& g = stats.at(2, input, 0);
    EXPECT_EQ(e.counts, std::vector<float>{static_cast<float>(g.tokens)});
    for (std::size_t j = 0; j < e.n_columns(); ++j) {
      EXPECT_NEAR(e.in_sum2[j], g.sum_sq[j], kMeanTolerance * g.sum_sq[j]) << name << " " << j;
    }
  }
}

TEST_F(ImatrixExport, UnknownSourceIsAnInputError) {
  const fs::path log = *dir_ / "unknown.log";
  EXPECT_EQ(run(ptq() + " imatrix --stats " + stats_file().string() + " --mix web=1 --out " +
                    (*dir_ / "unknown.gguf").string(),
                log),
            2);
  EXPECT_NE(test::read_bytes(log).find("--mix web"), std::string::npos) << test::read_bytes(log);
  EXPECT_FALSE(fs::exists(*dir_ / "unknown.gguf"));
}

MatrixRM f16_weights(const gguf::TensorInfo& t) {
  MatrixRM W(t.rows(), t.ne.at(0));
  for (Eigen::Index i = 0; i < W.size(); ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, t.data.data() + 2 * i, sizeof(h));
    W.data()[i] = half_to_float(h);
  }
  return W;
}

// llama-quantize --imatrix <ours> F16 OUT Q4_K 2 (Q4_K_M: Q4_K and Q6_K
// tensors); each quantized tensor against ggml_quantize with the importance
// llama-quantize reads from the same file. The rows are the F16 file's own
// (llama.cpp permutes q/k rows; the importance is per column). Returns the
// quantized tensors compared and those with an importance.
std::pair<int, int> expect_llama_quantize_agrees(const fs::path& imatrix_path,
                                                 const fs::path& f16_path, const fs::path& out) {
  const fs::path log = out.string() + ".log";
  const fs::path tool = test::shared_dir() / "tools/llama.cpp/llama-quantize";
  EXPECT_EQ(run(tool.string() + " --imatrix " + imatrix_path.string() + " " + f16_path.string() +
                    " " + out.string() + " Q4_K 2",
                log),
            0)
      << test::read_bytes(log);
  const Imatrix imatrix = read_imatrix(imatrix_path);
  const auto f16 = gguf::File::open(f16_path);
  const auto quantized = gguf::File::open(out);
  int compared = 0, with_importance = 0;
  for (const gguf::TensorInfo& t : quantized->tensors()) {
    const std::optional<GgmlGrid> grid = gguf_grid(t.type);
    if (!grid) continue;  // norms
    const std::optional<std::vector<float>> importance = imatrix.importance(t.name);
    const GgmlBlocks q = ggml_quantize(*grid, f16_weights(f16->require_tensor(t.name)),
                                       importance.value_or(std::vector<float>{}));
    const std::vector<std::byte> bytes = pack(q);
    EXPECT_TRUE(bytes.size() == t.data.size() &&
                std::memcmp(bytes.data(), t.data.data(), bytes.size()) == 0)
        << t.name << " (" << ggml_grid_info(*grid).name << ")";
    ++compared;
    with_importance += importance.has_value();
  }
  return {compared, with_importance};
}

TEST_F(ImatrixExport, LlamaQuantizeWritesWhatPtqQuantizesWithTheSameImportance) {
  const auto [compared, with_importance] =
      expect_llama_quantize_agrees(export_imatrix("for-llama-quantize"),
                                   test::fixture("gguf/tiny-f16.gguf"), *dir_ / "tiny-Q4_K_M.gguf");
  EXPECT_EQ(compared, 30);         // every 2-D tensor
  EXPECT_EQ(with_importance, 28);  // all but token_embd and output
}

// Phi-3's file fuses q/k/v into attn_qkv and gate/up into ffn_up: the same
// statistics (tiny as Phi-3 is the same model) give every one of its Linears
// an importance.
TEST_F(ImatrixExport, PhiThreesFusedTensorsGetTheirInputsImportance) {
  const fs::path phi3 = test::tiny_as("phi3");
  const fs::path f16 = *dir_ / "phi3-f16";
  ASSERT_EQ(run(ptq() + " quantize --model " + phi3.string() +
                    " --method none --gguf-type F16 --format gguf --out " + f16.string(),
                *dir_ / "phi3-f16.log"),
            0)
      << test::read_bytes(*dir_ / "phi3-f16.log");
  const auto [compared, with_importance] = expect_llama_quantize_agrees(
      export_imatrix("for-phi3"), f16 / "model.gguf", *dir_ / "phi3-Q4_K_M.gguf");
  EXPECT_EQ(compared, 18);         // attn_qkv, attn_output, ffn_up, ffn_down x 4, embd, output
  EXPECT_EQ(with_importance, 16);  // all but token_embd and output
}

}  // namespace
}  // namespace ptq
