// `ptq inspect` end to end: runs the built binary and checks its JSON against
// numbers computed here from config.json.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "test_paths.hpp"

namespace ptq {
namespace {

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

RunResult run_ptq(const std::string& args) {
  // Built by appending: GCC 12's -Wrestrict misfires on chained operator+ here.
  std::string command = "'";
  command.append(test::ptq_binary().string()).append("' ").append(args).append(" 2>&1");
  FILE* pipe = ::popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Llama parameter count from the config alone: embeddings, per layer two norms,
// q/k/v/o and the SwiGLU MLP, the final norm, and lm_head unless tied.
std::int64_t llama_parameters(const nlohmann::json& c) {
  const std::int64_t h = c["hidden_size"], inter = c["intermediate_size"], vocab = c["vocab_size"];
  const std::int64_t heads = c["num_attention_heads"], kv = c["num_key_value_heads"],
                     hd = c["head_dim"];
  const std::int64_t layer =
      2 * h + h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter;
  return vocab * h + c["num_hidden_layers"].get<std::int64_t>() * layer + h +
         (c["tie_word_embeddings"].get<bool>() ? 0 : vocab * h);
}

TEST(CmdInspect, JsonParameterCountMatchesConfig) {
  const auto model = test::source_dir() / "examples/models/tiny";
  std::ifstream in(model / "config.json");
  const auto config = nlohmann::json::parse(in);

  const RunResult r = run_ptq("inspect '" + model.string() + "' --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto d = nlohmann::json::parse(r.output);
  EXPECT_EQ(d["architecture"], "llama");
  EXPECT_EQ(d["parameters"].get<std::int64_t>(), llama_parameters(config));
  EXPECT_EQ(d["config"]["hidden_size"], config["hidden_size"]);
  EXPECT_EQ(d["config"]["num_key_value_heads"], config["num_key_value_heads"]);

  std::uint64_t bytes = 0;
  for (const auto& t : d["tensors"]) {
    std::uint64_t numel = 1;
    for (const auto& dim : t["shape"]) numel *= dim.get<std::uint64_t>();
    EXPECT_EQ(t["bytes"].get<std::uint64_t>(), numel * 2) << t["name"];  // all F16
    bytes += t["bytes"].get<std::uint64_t>();
  }
  EXPECT_EQ(d["bytes"].get<std::uint64_t>(), bytes);
  EXPECT_EQ(d["tensors"].size(), 2u + 9u * config["num_hidden_layers"].get<std::size_t>() + 1u);
}

TEST(CmdInspect, CorruptInputGivesExitCode2AndMessage) {
  const auto dir = test::temp_dir("inspect");
  std::ofstream(dir / "model.safetensors") << "tiny";
  const RunResult r = run_ptq("inspect '" + dir.string() + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("model.safetensors: expected at least 8 bytes"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace ptq

namespace ptq {
namespace {

// A llama.cpp-written Q4_K file: ptq reads its config from the metadata and
// reports each tensor's type and Q4_K's 4.5 bits per weight (144 bytes per 256).
TEST(CmdInspect, GgufFileShowsTypesAndBitsPerWeight) {
  const RunResult r = run_ptq("inspect --json " + test::fixture("gguf/tiny-Q4_K.gguf").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["config"]["num_hidden_layers"], 4);
  EXPECT_EQ(j["metadata"]["general.architecture"], "llama");
  bool found = false;
  for (const auto& t : j["tensors"]) {
    if (t["name"] != "blk.0.attn_q.weight") continue;
    found = true;
    EXPECT_EQ(t["dtype"], "Q4_K");
    EXPECT_DOUBLE_EQ(t["bits_per_weight"].get<double>(), 4.5);
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace ptq

namespace ptq {
namespace {

std::map<std::string, std::string> digests(const std::filesystem::path& path) {
  const RunResult r = run_ptq("inspect --json --digests '" + path.string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto d = nlohmann::json::parse(r.output);
  std::map<std::string, std::string> out;
  for (const auto& t : d["tensors"]) out[t["name"]] = t["fnv1a64"];
  return out;
}

// llama.cpp's converter copies a float16 V or down projection byte for byte
// (ggml's reversed shape is the same row-major layout) but permutes Q's rows
// for its rotary layout: the digests must say exactly that, across formats.
TEST(CmdInspect, DigestsCompareTensorsAcrossFormats) {
  const auto gguf = digests(test::fixture("gguf/tiny-f16.gguf"));
  const auto hf = digests(test::fixture("models/tiny"));
  ASSERT_EQ(gguf.at("blk.1.attn_v.weight").size(), 16u);
  EXPECT_EQ(gguf.at("blk.1.attn_v.weight"), hf.at("model.layers.1.self_attn.v_proj.weight"));
  EXPECT_EQ(gguf.at("blk.3.ffn_down.weight"), hf.at("model.layers.3.mlp.down_proj.weight"));
  EXPECT_NE(gguf.at("blk.1.attn_q.weight"), hf.at("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_NE(gguf.at("blk.1.attn_v.weight"), gguf.at("blk.2.attn_v.weight"));
}

}  // namespace
}  // namespace ptq
