// `ptq export --from RUN --format F --out DIR` re-emits a run of tiny in
// another format with no forward pass: the exported Linears are the run's
// grids exactly (GGUF Q4_0 blocks from a 4-bit g128 run; gptq -> dequantized -> gptq, bnb-nf4 ->
// dequantized -> bnb-nf4 and W8A8 compressed-tensors -> dequantized -> compressed-tensors give back
// the same model.safetensors bytes; compressed-tensors from gptq evaluates to the same perplexity);
// the record keeps the first run's source model; a format that cannot hold the grid is refused
// before any work, naming why, and leaves no folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/eval/model_open.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

class Export : public testing::Test {
 protected:
  void SetUp() override { dir_ = test::temp_dir("export-" + std::to_string(getpid())); }

  int ptq(const std::string& args) {
    return WEXITSTATUS(std::system(
        (test::ptq_binary().string() + " " + args + " > " + (dir_ / "log").string() + " 2>&1")
            .c_str()));
  }
  std::string log() const { return test::read_bytes(dir_ / "log"); }

  fs::path quantize(const std::string& name, const std::string& args) {
    const fs::path out = dir_ / name;
    EXPECT_EQ(ptq("quantize --model " + test::fixture("models/tiny").string() + " " + args +
                  " --out " + out.string()),
              0)
        << log();
    return out;
  }

  fs::path exported(const fs::path& run, const std::string& name, const std::string& format) {
    const fs::path out = dir_ / name;
    EXPECT_EQ(
        ptq("export --from " + run.string() + " --format " + format + " --out " + out.string()), 0)
        << log();
    return out;
  }

  fs::path dir_;
};

std::string weights(const fs::path& dir) { return test::read_bytes(dir / "model.safetensors"); }

double perplexity(const fs::path& dir) {
  EvalConfig config;
  config.ctx = 128;
  config.max_windows = 4;
  return evaluate(open_model(dir), read_ids(test::fixture("goldens/tiny/eval_generic.ids")), config)
      .ppl;
}

TEST_F(Export, GptqRunThroughDequantizedAndCompressedTensors) {
  const fs::path run = quantize("run", "--method rtn --bits 4 --group 128 --sym");
  const fs::path dequantized = exported(run, "dequantized", "dequantized");
  const fs::path back = exported(dequantized, "back", "gptq");
  EXPECT_EQ(weights(back), weights(run));
  const fs::path ct = exported(run, "ct", "compressed-tensors");
  EXPECT_EQ(perplexity(ct), perplexity(run));
  const H5Reader record(ct / "quantized.h5");
  EXPECT_EQ(record.string_attribute("/", "source_model"), "tiny");
  EXPECT_EQ(record.string_attribute("/", "exported_from"), "run");
  EXPECT_EQ(H5Reader(run / "quantized.h5").string_attribute("/", "source_model_hash"),
            record.string_attribute("/", "source_model_hash"));
}

// GGUF where ggml's blocks hold the grid: a 4-bit symmetric g128 grid with
// float16 scales is Q4_0 blocks, each block the scale of its group; llama.cpp's
// k-quant mixes hold no such grid and are refused, naming a Linear.
TEST_F(Export, IntoGgufWhereTheBlocksHoldTheGrid) {
  const fs::path run = quantize("run", "--method rtn --bits 4 --group 128 --sym");
  const fs::path gguf = dir_ / "q4_0";
  ASSERT_EQ(ptq("export --from " + run.string() + " --format gguf --gguf-type Q4_0 --out " +
                gguf.string()),
            0)
      << log();
  const Model from_gguf = open_model(gguf), from_run = open_model(run);
  for (int layer = 0; layer < from_run.num_layers(); ++layer) {
    const BlockWeights a = from_gguf.load_block(layer), b = from_run.load_block(layer);
    for (LinearRole role : all_linear_roles)
      EXPECT_EQ(a.weight(role), b.weight(role)) << layer << " " << linear_role_name(role);
  }
  EXPECT_NE(ptq("export --from " + run.string() + " --format gguf --gguf-type Q4_K_M --out " +
                (dir_ / "q4_k_m").string()),
            0);
  EXPECT_NE(log().find("blocks holding the run's grid exactly"), std::string::npos) << log();
  EXPECT_FALSE(fs::exists(dir_ / "q4_k_m"));
}

TEST_F(Export, Nf4AndW8A8RoundTripThroughDequantized) {
  for (const char* method : {"nf4", "w8a8"}) {
    SCOPED_TRACE(method);
    const std::string m = method;
    const fs::path run = quantize(m, "--method " + m);
    const fs::path back = exported(exported(run, m + "-dq", "dequantized"), m + "-back",
                                   m == "nf4" ? "bnb-nf4" : "compressed-tensors");
    EXPECT_EQ(weights(back), weights(run));
    EXPECT_EQ(test::read_bytes(back / "config.json"), test::read_bytes(run / "config.json"));
  }
}

TEST_F(Export, FormatsThatCannotHoldTheGridAreRefused) {
  const fs::path run = quantize("run", "--method rtn --bits 4 --group 128 --sym");
  const fs::path dq = quantize("dq", "--method rtn --bits 4 --group 128 --format dequantized");
  struct Refused {
    fs::path from;
    std::string format, message;
  };
  const Refused cases[] = {
      {run, "awq", "4-bit asymmetric"},
      {run, "bnb-nf4", "format bnb-nf4"},
      {run, "gguf", "gguf_type"},
      {dq, "gptq", "float16 scales"},  // the dequantized run's scales are float32
      {test::fixture("models/tiny"), "gptq", "quantized.h5"},  // not a run
  };
  for (const Refused& c : cases) {
    SCOPED_TRACE(c.format);
    const fs::path out = dir_ / "refused";
    EXPECT_NE(ptq("export --from " + c.from.string() + " --format " + c.format + " --out " +
                  out.string()),
              0);
    EXPECT_NE(log().find(c.message), std::string::npos) << log();
    EXPECT_FALSE(fs::exists(out));
  }
}

}  // namespace
}  // namespace ptq
