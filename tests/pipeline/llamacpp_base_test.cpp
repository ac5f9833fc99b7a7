// `ptq eval --llamacpp-base`: llama-perplexity's KL-divergence base of
// tiny-f16.gguf (the first 8000 bytes of WikiText-2 test, -c 128 --chunks 4)
// read back, and ptq's float model scored on llama.cpp's tokens and chunks:
// the same distributions (KL <= 0.001, top-1 >= 0.98), the same perplexity as
// the base's (its log-probabilities of the scored tokens), the same tokens as
// ptq's tokenizer; the same with a vocab that adds a BOS (llama.cpp then puts
// BOS first in every chunk); corrupted base files are InputErrors naming the file.
#include "pipeline/eval/llamacpp_base.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "io/error.hpp"
#include "io/gguf.hpp"
#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

constexpr int kCtx = 128, kChunks = 4, kVocab = 2048;
constexpr int kTextBytes = 8000;  // about 1900 tokens: 4 chunks of 128 and more
constexpr double kMaxKl = 0.001, kMinTop1 = 0.98;
// llama.cpp multiplies F16 weights with F16-rounded activations; ptq runs float32.
constexpr double kPplTolerance = 1e-3;  // relative

fs::path tiny() { return test::fixture("models/tiny"); }

fs::path tiny_f16() { return test::fixture("gguf/tiny-f16.gguf"); }

int run(const std::string& command, const fs::path& log) {
  return WEXITSTATUS(std::system((command + " > " + log.string() + " 2>&1").c_str()));
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class LlamacppBaseTest : public ::testing::Test {
 protected:
  // ctest runs each test in its own process, possibly in parallel: one folder per process.
  static void SetUpTestSuite() {
    dir_ = new fs::path(test::temp_dir("llamacpp-base-" + std::to_string(getpid())));
    const std::string text =
        test::read_bytes(test::fixture("corpus/generic_eval/wikitext2_test.txt"))
            .substr(0, kTextBytes);
    write_bytes(text_file(), text);
    make_base(tiny_f16(), base_file(), log_file());
  }
  // llama-perplexity -m MODEL -f text.txt -c 128 --chunks 4 -t 2 --kl-divergence-base BASE
  static void make_base(const fs::path& model, const fs::path& base, const fs::path& log) {
    const fs::path tool = test::shared_dir() / "tools/llama.cpp/llama-perplexity";
    ASSERT_EQ(run(tool.string() + " -m " + model.string() + " -f " + text_file().string() + " -c " +
                      std::to_string(kCtx) + " --chunks " + std::to_string(kChunks) +
                      " -t 2 --kl-divergence-base " + base.string(),
                  log),
              0)
        << test::read_bytes(log);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path text_file() { return *dir_ / "text.txt"; }
  static fs::path base_file() { return *dir_ / "base.bin"; }
  static fs::path log_file() { return *dir_ / "llama-perplexity.log"; }

  // A copy of the base file changed by `edit`.
  static fs::path corrupted(const std::string& name, void (*edit)(std::string&)) {
    std::string bytes = test::read_bytes(base_file());
    edit(bytes);
    const fs::path path = *dir_ / name;
    write_bytes(path, bytes);
    return path;
  }
  static fs::path* dir_;
};
fs::path* LlamacppBaseTest::dir_ = nullptr;

TEST_F(LlamacppBaseTest, ReadsHeaderTokensAndNormalisedRows) {
  LlamacppBase base = LlamacppBase::open(base_file());
  EXPECT_EQ(base.n_ctx(), kCtx);
  EXPECT_EQ(base.n_vocab(), kVocab);
  EXPECT_EQ(base.n_chunk(), kChunks);
  EXPECT_EQ(base.first_scored(), kCtx / 2);
  EXPECT_EQ(base.scored_positions(), kCtx / 2 - 1);
  // No BOS (tiny's vocab adds none): the protocol's eval ids, which start the same text.
  const std::vector<std::int32_t> golden = read_ids(test::fixture("goldens/tiny/eval_generic.ids"));
  ASSERT_EQ(base.tokens().size(), static_cast<std::size_t>(kCtx * kChunks));
  EXPECT_TRUE(std::equal(base.tokens().begin(), base.tokens().end(), golden.begin()));
  for (int c = 0; c < kChunks; ++c) {
    const MatrixRM log_probs = base.read_log_probs(c);
    ASSERT_EQ(log_probs.rows(), base.scored_positions());
    for (Eigen::Index r = 0; r < log_probs.rows(); ++r) {
      // 16 nats in 65535 steps: exp(log p) sums to 1 up to the rounding of the maximum.
      EXPECT_NEAR(log_probs.row(r).array().cast<double>().exp().sum(), 1.0, 1e-3) << c << " " << r;
    }
  }
}

TEST_F(LlamacppBaseTest, PtqOnLlamacppChunksMatchesTheBase) {
  const fs::path json = *dir_ / "eval.json", log = *dir_ / "eval.log";
  ASSERT_EQ(
      run(test::ptq_binary().string() + " eval --model " + tiny().string() + " --llamacpp-base " +
              base_file().string() + " --text " + text_file().string() + " --json " + json.string(),
          log),
      0)
      << test::read_bytes(log);
  const auto j = nlohmann::json::parse(test::read_bytes(json)).at("llamacpp_base");
  EXPECT_EQ(j.at("chunks"), kChunks);
  EXPECT_EQ(j.at("positions"), kChunks * (kCtx / 2 - 1));
  EXPECT_EQ(j.at("bos"), false);
  EXPECT_EQ(j.at("tokens_match"), true);
  EXPECT_LE(j.at("kl").get<double>(), kMaxKl);
  EXPECT_GE(j.at("top1").get<double>(), kMinTop1);
  const double base_ppl = j.at("base_ppl").get<double>();
  EXPECT_NEAR(j.at("ppl").get<double>(), base_ppl, kPplTolerance * base_ppl);
}

// tiny-f16.gguf with tokenizer.ggml.add_bos_token = true.
fs::path tiny_f16_adding_bos(const fs::path& dir) {
  const auto tiny = gguf::File::open(tiny_f16());
  auto metadata = tiny->metadata();
  metadata.emplace_back("tokenizer.ggml.add_bos_token", gguf::make_bool(true));
  std::vector<gguf::TensorToWrite> tensors;
  for (const gguf::TensorInfo& t : tiny->tensors())
    tensors.push_back({t.name, t.ne, t.type, t.data});
  const fs::path path = dir / "tiny-f16-bos.gguf";
  gguf::write(path, metadata, tensors);
  return path;
}

TEST_F(LlamacppBaseTest, VocabAddingBosPutsItFirstInEveryChunk) {
  const fs::path base = *dir_ / "base-bos.bin", json = *dir_ / "bos.json";
  make_base(tiny_f16_adding_bos(*dir_), base, *dir_ / "llama-perplexity-bos.log");
  EXPECT_EQ(LlamacppBase::open(base).tokens()[0], 0);  // tiny's BOS, <|endoftext|>
  ASSERT_EQ(
      run(test::ptq_binary().string() + " eval --model " + tiny().string() + " --llamacpp-base " +
              base.string() + " --text " + text_file().string() + " --json " + json.string(),
          *dir_ / "bos.log"),
      0)
      << test::read_bytes(*dir_ / "bos.log");
  const auto j = nlohmann::json::parse(test::read_bytes(json)).at("llamacpp_base");
  EXPECT_EQ(j.at("bos"), true);
  EXPECT_EQ(j.at("tokens_match"), true);
  EXPECT_LE(j.at("kl").get<double>(), kMaxKl);
  EXPECT_GE(j.at("top1").get<double>(), kMinTop1);
  const double base_ppl = j.at("base_ppl").get<double>();
  EXPECT_NEAR(j.at("ppl").get<double>(), base_ppl, kPplTolerance * base_ppl);
}

TEST_F(LlamacppBaseTest, TextThatIsNotTheBasesIsReported) {
  const fs::path other = *dir_ / "other.txt", json = *dir_ / "other.json";
  write_bytes(other, "A different text entirely. " + test::read_bytes(text_file()));
  ASSERT_EQ(run(test::ptq_binary().string() + " eval --model " + tiny().string() +
                    " --llamacpp-base " + base_file().string() + " --text " + other.string() +
                    " --max-windows 1 --json " + json.string(),
                *dir_ / "other.log"),
            0);
  const auto j = nlohmann::json::parse(test::read_bytes(json)).at("llamacpp_base");
  EXPECT_EQ(j.at("chunks"), 1);
  EXPECT_EQ(j.at("tokens_match"), false);
  EXPECT_EQ(j.at("first_token_difference"), 0);
}

void expect_input_error_naming(const fs::path& path, const std::string& what) {
  try {
    LlamacppBase base = LlamacppBase::open(path);
    for (int c = 0; c < base.n_chunk(); ++c) base.read_log_probs(c);
    ADD_FAILURE() << "no error for " << what;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

void set_i32(std::string& bytes, std::size_t at, std::int32_t v) {
  std::memcpy(bytes.data() + at, &v, sizeof(v));
}

TEST_F(LlamacppBaseTest, CorruptedFilesAreInputErrorsNamingTheFile) {
  expect_input_error_naming(*dir_ / "absent.bin", "a missing file");
  expect_input_error_naming(corrupted("magic.bin", [](std::string& b) { b[0] = 'x'; }), "magic");
  expect_input_error_naming(corrupted("header.bin", [](std::string& b) { b.resize(14); }),
                            "a cut header");
  expect_input_error_naming(corrupted("truncated.bin", [](std::string& b) { b.pop_back(); }),
                            "a truncated row");
  expect_input_error_naming(corrupted("trailing.bin", [](std::string& b) { b += "x"; }),
                            "trailing bytes");
  expect_input_error_naming(
      corrupted("vocab.bin", [](std::string& b) { set_i32(b, 12, 0x7fffffff); }), "n_vocab");
  expect_input_error_naming(corrupted("ctx.bin", [](std::string& b) { set_i32(b, 8, -128); }),
                            "negative n_ctx");
  expect_input_error_naming(
      corrupted("chunks.bin", [](std::string& b) { set_i32(b, 16, 1 << 30); }), "n_chunk");
  expect_input_error_naming(
      corrupted("token.bin", [](std::string& b) { set_i32(b, 20 + 4 * 7, kVocab); }), "a token");
  // The scale of chunk 2's first row (rows start after the header and the tokens).
  expect_input_error_naming(corrupted("scale.bin",
                                      [](std::string& b) {
                                        const std::size_t row = 2 * (kCtx / 2 - 1) * (kVocab + 4);
                                        const float nan = std::nanf("");
                                        std::memcpy(b.data() + 20 + 4 * kCtx * kChunks + 2 * row,
                                                    &nan, sizeof(nan));
                                      }),
                            "a NaN scale");
}

TEST_F(LlamacppBaseTest, CliReportsACorruptedBase) {
  const fs::path bad =
      corrupted("cli-truncated.bin", [](std::string& b) { b.resize(b.size() / 2); });
  const fs::path log = *dir_ / "cli-truncated.log";
  EXPECT_EQ(run(test::ptq_binary().string() + " eval --model " + tiny().string() +
                    " --llamacpp-base " + bad.string(),
                log),
            2);
  EXPECT_NE(test::read_bytes(log).find(bad.string()), std::string::npos) << test::read_bytes(log);
}

}  // namespace
}  // namespace ptq
