// llama.cpp runs ptq's GGUF files as ptq does. For tiny and for checkpoints
// made here from tiny's trained weights in the layouts of Qwen2 (q/k/v biases),
// Qwen3 (q/k norms), Llama 3 (llama3 rope scaling, so a rope_freqs.weight
// tensor), Phi-3 (fused qkv_proj and gate_up_proj; with LongRoPE, its two
// factor tensors), Gemma 2 (norms stored as 1 + w, sandwich norms, GeGLU,
// soft-capping, sliding windows), Gemma 3 (q/k norms, a global layer with
// linear RoPE among sliding ones with their own), Mixtral (8 experts, top 2)
// and Qwen3-MoE (4 stacked experts, q/k norms), and for the Qwen3-MoE model
// trained on real text by tests/data/train_model.py, ptq writes F16, Q8_0, Q4_K_M
// and GPTQ Q4_0 files (and AWQ Q4_0 on tiny and the Gemmas, GPTQ Q4_1 on tiny);
// llama-perplexity --kl-divergence-base saves its tokens and log-probabilities
// of each, and `ptq eval --llamacpp-base` (ptq's own decoder and float32
// forward) gets llama.cpp's tokens exactly and its distributions within the
// bounds below.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.hpp"
#include "tiny_as.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

fs::path tiny() { return test::fixture("models/tiny"); }

// ptq's float32 forward against llama.cpp's on the same file: KL at most
// 0.001 nats (less than Q8_0 costs), and top-1 agreement of 98 %, or, where
// llama.cpp's own two attention kernels (flash attention on and off) agree on
// fewer positions than that, within one point of their agreement, and never
// below the file's floor (files_for). llama.cpp's
// CPU matmuls round the activations of quantized weights to 8 bits (Q8_0, or
// Q8_K for k-quants), and that rounding turns the last bits of any other
// difference into whole steps: on tiny's Q4_K_M file llama.cpp with and
// without flash attention agrees on 97.4 % of the top tokens (KL 9.2e-4),
// ptq and llama.cpp on 97.3 % (KL 8.5e-4).
constexpr double kMaxKl = 0.001, kMinTop1 = 0.98, kTop1Slack = 0.01;
constexpr int kChunks = 24;  // of 128 tokens of examples/data/wikitext2_test_head.txt
// The mixtures add a second amplifier: a token whose router scores two experts
// nearly alike takes one or the other after that rounding, in that layer and
// the ones after it. On the Q4_K_M files, qwen3moe (tiny's MLP as near-identical
// experts under a random router): ptq and llama.cpp agree on 96.3 % of the top
// tokens, llama.cpp with and without flash attention on 97.4 %; trained_qwen3moe
// (a trained router, experts that differ): KL 1.9e-3 between ptq and llama.cpp,
// 1.4e-3 between llama.cpp's two kernels, past 0.001 for both (Q8_0: 1.3e-3 and
// 1.1e-3). So the mixtures get two points of top-1 and a KL of at most twice
// llama.cpp's own; a routing error (weights not renormalized, a wrong expert)
// costs far more (docs/bench/gguf_llamacpp_agreement.md). llama.cpp's own KL is
// a noisy sample of how near-tied the routing is: on trained_qwen3moe's four
// files one CI machine measured 6.8e-4 (GPTQ Q4_0) to 1.4e-3 (Q4_K_M), and
// ptq's 1.37e-3 on the GPTQ file was past twice the first. The bound therefore
// reads the model's largest own KL over all its files, checked after the last.
constexpr double kMixtureTop1Slack = 0.02, kMixtureMinTop1 = 0.96, kMixtureKlOverOwn = 2.0;

bool is_mixture(const std::string& model) {
  return model == "mixtral" || model == "qwen3moe" || model == "trained_qwen3moe";
}

fs::path source_of(const std::string& model) {
  if (model == "tiny") return tiny();
  if (model == "trained_qwen3moe") return test::source_dir() / "tests/data/models/qwen3moe-trained";
  return test::tiny_as(model);
}

int run(const std::string& command, const fs::path& log) {
  return WEXITSTATUS(std::system((command + " > " + log.string() + " 2>&1").c_str()));
}

struct GgufFile {
  const char* name;
  std::string args;  // `ptq quantize` flags besides --model, --format and --out
  double min_top1;   // a floor under the bound below, whatever llama.cpp's own agreement
};

std::vector<GgufFile> files_for(const std::string& model) {
  const std::string calib = " --calib-ids " +
                            test::fixture("goldens/tiny/calib_generic.ids").string() +
                            " --samples 8 --seqlen 128";
  // Floors: 0.999 on F16 (0.998 on gemma2, whose logits, soft-capped at 30
  // through a head tied to tiny's embedding, hold near-ties: llama.cpp's two
  // kernels agree on 99.80 % of its top tokens, ptq and llama.cpp on 99.87 %);
  // on tiny the bounds its earlier test held (0.98 for Q8_0 and GPTQ Q4_0);
  // 0.97 on the rest, 0.96 on the mixtures' Q4_K_M (kMixtureTop1Slack).
  const bool tiny = model == "tiny";
  std::vector<GgufFile> files = {
      {"f16", "--method none --gguf-type F16", model == "gemma2" ? 0.998 : 0.999},
      {"q8_0", "--method rtn --gguf-type Q8_0", tiny ? 0.98 : 0.97},
      {"q4_k_m", "--method rtn --gguf-type Q4_K_M", is_mixture(model) ? kMixtureMinTop1 : 0.97},
      {"gptq-q4_0", "--method gptq --gguf-type Q4_0" + calib, tiny ? 0.98 : 0.97},
  };
  // LongRoPE's own part is the rope: its F16 file is within KL 1e-6 of llama.cpp.
  // Its Q4_K_M file is left out: there ptq and llama.cpp differ by KL 0.00102 and
  // llama.cpp with flash attention on and off by 0.00106, both past the bound.
  if (model == "phi3longrope")
    std::erase_if(files, [](const GgufFile& f) { return std::string_view(f.name) == "q4_k_m"; });
  if (tiny) {
    files.push_back({"gptq-q4_1", "--method gptq --gguf-type Q4_1" + calib, 0.97});
    files.push_back({"gptq-q4_k_m", "--method gptq --act-order --gguf-type Q4_K_M" + calib, 0.97});
    files.push_back({"gptq-iq4_xs", "--method gptq --gguf-type IQ4_XS" + calib, 0.97});
    files.push_back({"awq-q4_0", "--method awq --gguf-type Q4_0" + calib, 0.97});
  }
  // Gemma's folded norms are written as w and stored as 1 + w.
  if (model.starts_with("gemma"))
    files.push_back({"awq-q4_0", "--method awq --gguf-type Q4_0" + calib, 0.97});
  return files;
}

// llama-perplexity's "Mean KLD" and "Same top p" of a --kl-divergence run over
// kChunks chunks: its summary, or else the line of the last chunk, whose
// columns are the same means so far (to 5 decimals). Its logger writes from a
// worker thread that exit sometimes cuts short (the last lines lost, exit
// status 0; under load several runs in a row); the numbers are deterministic,
// so a run without either is repeated.
struct LlamaCppKld {
  double kl = 0, top1 = 0;
};

std::optional<LlamaCppKld> last_chunk_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    // "  24  PPL ± e  ln-ratio ± e  KL ± e  dp-rms ± e %  same-top ± e %"
    std::istringstream fields(line);
    std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
    if (f.size() == 18 && f[0] == std::to_string(kChunks) && f[8] == "±")
      return LlamaCppKld{std::stod(f[7]), std::stod(f[14]) / 100.0};
  }
  return std::nullopt;
}

LlamaCppKld llama_cpp_kld(const std::string& command, const fs::path& log) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    EXPECT_EQ(run(command, log), 0) << test::read_bytes(log);
    const std::string text = test::read_bytes(log);
    const auto kl = text.find("Mean    KLD:"), top = text.find("Same top p:");
    if (kl != std::string::npos && top != std::string::npos)
      return {std::stod(text.substr(kl + 12)), std::stod(text.substr(top + 11)) / 100.0};
    if (const auto last = last_chunk_line(text)) return *last;
  }
  ADD_FAILURE() << "no KLD summary in " << log << ":\n" << test::read_bytes(log);
  return {};
}

// A file read back by ptq is near the checkpoint it came from, within `max_kl`
// (the F16 file: the same model). The comparison with llama.cpp, which reads
// the same file, cannot show this: e.g. Gemma's norms stored as w rather than
// 1 + w fool both alike (KL 3.1 from the checkpoint).
void expect_near_source(const fs::path& gguf_folder, const fs::path& source,
                        const std::string& text, const fs::path& dir, double max_kl) {
  const fs::path json = dir / "vs-source.json";
  ASSERT_EQ(run(test::ptq_binary().string() + " eval --model " + gguf_folder.string() +
                    " --reference " + source.string() + " --text " + text +
                    " --ctx 128 --max-windows 24 --json " + json.string(),
                dir / "eval.log"),
            0)
      << test::read_bytes(dir / "eval.log");
  const auto j = nlohmann::json::parse(test::read_bytes(json));
  std::printf("%s vs its checkpoint: kl %.3g top-1 %.4f\n", gguf_folder.filename().c_str(),
              j["kl"].get<double>(), j["top1"].get<double>());
  EXPECT_LE(j["kl"].get<double>(), max_kl);
}

class LlamaCppAgrees : public testing::TestWithParam<std::string> {};

TEST_P(LlamaCppAgrees, OnEveryFilePtqWrites) {
  const std::string model = GetParam();
  const fs::path source = source_of(model);
  const fs::path dir = test::temp_dir("gguf-llamacpp-" + model + "-" + std::to_string(getpid()));
  const std::string text = (test::source_dir() / "examples/data/wikitext2_test_head.txt").string();
  const std::string perplexity = (test::shared_dir() / "tools/llama.cpp/llama-perplexity").string();
  const bool mixture = is_mixture(model);
  std::vector<std::pair<std::string, double>> mixture_kls;  // file, ptq vs llama.cpp
  double largest_own_kl = 0;
  for (const auto& [name, args, min_top1] : files_for(model)) {
    SCOPED_TRACE(name);
    const fs::path out = dir / name;
    ASSERT_EQ(run(test::ptq_binary().string() + " quantize --model " + source.string() + " " +
                      args + " --format gguf --out " + out.string(),
                  dir / "ptq.log"),
              0)
        << test::read_bytes(dir / "ptq.log");
    const fs::path base = dir / (std::string(name) + ".kld");
    const std::string llama = perplexity + " -m " + (out / "model.gguf").string() + " -f " + text +
                              " -c 128 --chunks " + std::to_string(kChunks) +
                              " -t 2 --kl-divergence-base " + base.string();
    ASSERT_EQ(run(llama, dir / "base.log"), 0) << test::read_bytes(dir / "base.log");
    const fs::path json = dir / (std::string(name) + ".json");
    ASSERT_EQ(run(test::ptq_binary().string() + " eval --model " + out.string() + " --reference " +
                      source.string() + " --text " + text + " --llamacpp-base " + base.string() +
                      " --json " + json.string(),
                  dir / "eval.log"),
              0)
        << test::read_bytes(dir / "eval.log");
    const auto j = nlohmann::json::parse(test::read_bytes(json))["llamacpp_base"];
    EXPECT_TRUE(j["tokens_match"].get<bool>());
    EXPECT_EQ(j["chunks"], kChunks);
    const double kl = j["kl"].get<double>(), top1 = j["top1"].get<double>();
    // llama.cpp against itself: the same file with its other attention kernel.
    // Run where a bound reads it (a mixture's KL, a top-1 under kMinTop1), or
    // for every file with PTQ_LLAMACPP_SELF set (the doc's table); else NaN.
    LlamaCppKld self{std::nan(""), std::nan("")};
    if (mixture || top1 < kMinTop1 || std::getenv("PTQ_LLAMACPP_SELF") != nullptr)
      self = llama_cpp_kld(llama + " --kl-divergence -fa off", dir / "self.log");
    std::printf(
        "%s %s: ptq vs llama.cpp kl %.3g top-1 %.4f; llama.cpp fa on vs off kl %.3g top-1 %.4f\n",
        model.c_str(), name, kl, top1, self.kl, self.top1);
    if (mixture) {
      mixture_kls.emplace_back(name, kl);
      largest_own_kl = std::max(largest_own_kl, self.kl);
    } else {
      EXPECT_LE(kl, kMaxKl);
    }
    const double slack = mixture ? kMixtureTop1Slack : kTop1Slack;
    const double own = std::isnan(self.top1) ? kMinTop1 : std::min(kMinTop1, self.top1 - slack);
    EXPECT_GE(top1, std::max(min_top1, own)) << "llama.cpp's own: " << self.top1;
    if (std::string_view(name) == "f16") expect_near_source(out, source, text, dir, 1e-6);
    // Q4_0 costs tiny 0.04, gemma3 0.06 (GPTQ) and 0.07 (AWQ); the bound is for
    // a misplaced fold or offset, which costs whole nats.
    if (std::string_view(name) == "awq-q4_0") expect_near_source(out, source, text, dir, 0.15);
  }
  for (const auto& [name, kl] : mixture_kls)
    EXPECT_LE(kl, std::max(kMaxKl, kMixtureKlOverOwn * largest_own_kl))
        << name << "; llama.cpp's largest own KL over the model's files: " << largest_own_kl;
}

INSTANTIATE_TEST_SUITE_P(GgufLlamaCpp, LlamaCppAgrees,
                         testing::Values("tiny", "qwen2", "qwen3", "llama3rope", "phi3",
                                         "phi3longrope", "gemma2", "gemma3", "mixtral", "qwen3moe",
                                         "trained_qwen3moe"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ptq
