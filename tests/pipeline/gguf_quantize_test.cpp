// `ptq quantize --format gguf` end to end against llama.cpp's own tools: RTN
// gives llama-quantize's file tensor for tensor (types and bytes, with and
// without an imatrix), method none gives the converter's F16 bytes, GPTQ onto
// Q4_0 loads in llama-perplexity, and recipe/format mismatches are refused
// before any work; the same for the mixture-of-experts families, whose experts
// are stacked tensors. gguf_llamacpp_test.cpp compares llama.cpp's forward with ptq's.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "calibrate/model.hpp"
#include "io/gguf.hpp"
#include "pipeline/eval/model_open.hpp"
#include "test_paths.hpp"
#include "tiny_as.hpp"

namespace ptq {
namespace {

std::filesystem::path tools() { return test::shared_dir() / "tools/llama.cpp"; }

int run(const std::string& command, const std::filesystem::path& log) {
  return WEXITSTATUS(std::system((command + " > " + log.string() + " 2>&1").c_str()));
}

int ptq_quantize(const std::string& args, const std::filesystem::path& log) {
  return test::run_ptq("quantize --model " + test::fixture("models/tiny").string() + " " + args, log);
}

// Every tensor of `got` has the type and the bytes of `want`'s tensor of that name.
void expect_same_tensors(const std::filesystem::path& got_path,
                         const std::filesystem::path& want_path) {
  const auto got = gguf::File::open(got_path);
  const auto want = gguf::File::open(want_path);
  ASSERT_EQ(got->tensors().size(), want->tensors().size());
  for (const gguf::TensorInfo& w : want->tensors()) {
    const gguf::TensorInfo* g = got->find_tensor(w.name);
    ASSERT_NE(g, nullptr) << w.name;
    EXPECT_EQ(g->type, w.type) << w.name;
    EXPECT_EQ(g->ne, w.ne) << w.name;
    EXPECT_TRUE(std::equal(g->data.begin(), g->data.end(), w.data.begin(), w.data.end())) << w.name;
  }
  EXPECT_EQ(got->require("general.file_type").as_int("general.file_type"),
            want->require("general.file_type").as_int("general.file_type"));
}

void expect_like_llama_quantize(const std::string& type, const std::string& imatrix) {
  const auto dir = test::temp_dir("gguf-rtn-" + type + (imatrix.empty() ? "" : "-imatrix"));
  const std::string with = imatrix.empty() ? "" : " --imatrix " + imatrix;
  ASSERT_EQ(ptq_quantize("--method rtn --format gguf --gguf-type " + type + with + " --out " +
                             (dir / "out").string(),
                         dir / "ptq.log"),
            0)
      << test::read_bytes(dir / "ptq.log");
  ASSERT_EQ(run((tools() / "llama-quantize").string() + with + " " +
                    test::fixture("gguf/tiny-f16.gguf").string() + " " +
                    (dir / "ref.gguf").string() + " " + type + " 2",
                dir / "ref.log"),
            0)
      << test::read_bytes(dir / "ref.log");
  expect_same_tensors(dir / "out/model.gguf", dir / "ref.gguf");
}

TEST(GgufQuantize, RtnIsLlamaQuantize) {
  for (const char* type : {"Q4_K_M", "Q4_0", "Q6_K", "Q3_K_S", "IQ4_XS"}) {
    SCOPED_TRACE(type);
    expect_like_llama_quantize(type, "");
  }
}

TEST(GgufQuantize, RtnWithImatrixIsLlamaQuantize) {
  const std::string imatrix = test::fixture("gguf/tiny-imatrix.gguf").string();
  for (const char* type : {"Q4_K_M", "Q4_0", "Q2_K"}) {
    SCOPED_TRACE(type);
    expect_like_llama_quantize(type, imatrix);
  }
}

// Mixtral (8 experts per-expert in the checkpoint: llama-quantize's 8-expert
// rules, attn_v/attn_k Q8_0, attn_output Q5_K, or Q3_K under Q3_K_L) and
// Qwen3-MoE (4 stacked experts): ptq's F16 file holds each layer's router in
// F32 and its experts as {in, out, experts} tensors, and ptq's RTN file is
// llama-quantize's of that F16 file, byte for byte.
TEST(GgufQuantize, MixtureRtnIsLlamaQuantize) {
  for (const std::string model : {"mixtral", "qwen3moe"}) {
    SCOPED_TRACE(model);
    const auto source = test::tiny_as(model);
    const auto dir = test::temp_dir("gguf-rtn-" + model);
    const auto quantize = [&](const std::string& args, const std::string& out) {
      return test::run_ptq("quantize --model " + source.string() + " --format gguf " + args +
                               " --out " + (dir / out).string(),
                           dir / "ptq.log");
    };
    ASSERT_EQ(quantize("--method none --gguf-type F16", "f16"), 0)
        << test::read_bytes(dir / "ptq.log");
    const auto f16 = gguf::File::open(dir / "f16/model.gguf");
    const std::int64_t experts = model == "mixtral" ? 8 : 4;
    EXPECT_EQ(f16->require_tensor("blk.1.ffn_gate_exps.weight").ne,
              (std::vector<std::int64_t>{256, 768, experts}));
    EXPECT_EQ(f16->require_tensor("blk.1.ffn_down_exps.weight").ne,
              (std::vector<std::int64_t>{768, 256, experts}));
    EXPECT_EQ(f16->require_tensor("blk.1.ffn_gate_inp.weight").type, 0u);  // F32
    EXPECT_EQ(f16->find_tensor("blk.1.ffn_gate.weight"), nullptr);
    const std::string arch = model == "mixtral" ? "llama" : "qwen3moe";
    EXPECT_EQ(f16->require(arch + ".expert_count").as_int("expert_count"), experts);
    EXPECT_EQ(f16->require(arch + ".expert_used_count").as_int("expert_used_count"), 2);
    // ptq's imatrix of the experts (one matrix per expert) is read by both alike.
    const auto stats = dir / "stats.h5", imatrix = dir / "imatrix.gguf";
    ASSERT_EQ(test::run_ptq("calibrate --model " + source.string() + " --calib-ids " +
                                test::fixture("goldens/tiny/calib_generic.ids").string() +
                                " --samples 4 --seqlen 64 --out " + stats.string(),
                            dir / "calibrate.log"),
              0)
        << test::read_bytes(dir / "calibrate.log");
    ASSERT_EQ(test::run_ptq("imatrix --stats " + stats.string() + " --out " + imatrix.string(),
                            dir / "imatrix.log"),
              0)
        << test::read_bytes(dir / "imatrix.log");
    for (const std::string type : {"Q4_K_M", "Q3_K_L", "Q4_0", "Q4_K_M+imatrix"}) {
      SCOPED_TRACE(type);
      const bool with = type.ends_with("+imatrix");
      const std::string policy = with ? "Q4_K_M" : type;
      const std::string flag = with ? " --imatrix " + imatrix.string() : "";
      ASSERT_EQ(quantize("--method rtn --gguf-type " + policy + flag, type), 0)
          << test::read_bytes(dir / "ptq.log");
      const auto ref = dir / (type + "-ref.gguf");
      ASSERT_EQ(
          run((tools() / "llama-quantize").string() + flag + " " +
                  (dir / "f16/model.gguf").string() + " " + ref.string() + " " + policy + " 2",
              dir / "ref.log"),
          0)
          << test::read_bytes(dir / "ref.log");
      expect_same_tensors(dir / type / "model.gguf", ref);
    }
  }
}

TEST(GgufQuantize, NoneF16IsTheConvertersFile) {
  const auto dir = test::temp_dir("gguf-f16");
  ASSERT_EQ(
      ptq_quantize("--method none --format gguf --gguf-type F16 --out " + (dir / "out").string(),
                   dir / "ptq.log"),
      0)
      << test::read_bytes(dir / "ptq.log");
  expect_same_tensors(dir / "out/model.gguf", test::fixture("gguf/tiny-f16.gguf"));
  // ptq eval reads it back through its own decoder: the float16 model itself.
  const std::string eval = test::ptq_binary().string() + " eval --model " + (dir / "out").string() +
                           " --reference " + test::fixture("models/tiny").string() + " --ids " +
                           test::fixture("goldens/tiny/eval_generic.ids").string() +
                           " --max-windows 4 --json " + (dir / "eval.json").string();
  ASSERT_EQ(run(eval, dir / "eval.log"), 0) << test::read_bytes(dir / "eval.log");
  const auto j = nlohmann::json::parse(test::read_bytes(dir / "eval.json"));
  EXPECT_LT(j["kl"].get<double>(), 1e-6);
  EXPECT_GT(j["top1"].get<double>(), 0.999);
}

std::uintmax_t folder_bytes(const std::filesystem::path& dir) {
  std::uintmax_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

// llama-perplexity loads `model` and scores a few chunks of text.
void expect_llama_perplexity_scores(const std::filesystem::path& model,
                                    const std::filesystem::path& log) {
  const std::string text = (test::source_dir() / "examples/data/wikitext2_test_head.txt").string();
  // llama-perplexity sometimes exits before its logging thread prints the
  // last line; the numbers are deterministic, so a few tries are enough.
  bool scored = false;
  for (int attempt = 0; attempt < 5 && !scored; ++attempt) {
    const int rc = run((tools() / "llama-perplexity").string() + " -m " + model.string() + " -f " +
                           text + " -c 128 --chunks 4 -t 2",
                       log);
    ASSERT_EQ(rc, 0) << test::read_bytes(log);
    scored = test::read_bytes(log).find("Final estimate: PPL") != std::string::npos;
  }
  EXPECT_TRUE(scored) << test::read_bytes(log);
}

// `ptq export` of a mixture's 8-bit symmetric group-32 RTN run into GGUF: Q8_0
// blocks hold that grid, so every expert's weights in the stacked tensors, as
// ptq's reader splits them back, and the routers are the run's; llama.cpp
// loads the file.
TEST(GgufQuantize, MixtureRunExportsIntoQ8_0) {
  for (const std::string model : {"mixtral", "qwen3moe"}) {
    SCOPED_TRACE(model);
    const auto source = test::tiny_as(model);
    const auto dir = test::temp_dir("gguf-export-" + model);
    ASSERT_EQ(
        test::run_ptq("quantize --model " + source.string() +
                          " --method rtn --bits 8 --group 32 --sym --out " + (dir / "run").string(),
                      dir / "run.log"),
        0)
        << test::read_bytes(dir / "run.log");
    ASSERT_EQ(test::run_ptq("export --from " + (dir / "run").string() +
                                " --format gguf --gguf-type Q8_0 --out " + (dir / "q8_0").string(),
                            dir / "export.log"),
              0)
        << test::read_bytes(dir / "export.log");
    const Model from_gguf = open_model(dir / "q8_0"), from_run = open_model(dir / "run");
    for (int layer = 0; layer < from_run.num_layers(); ++layer) {
      BlockWeights a = from_gguf.load_block(layer), b = from_run.load_block(layer);
      ASSERT_EQ(a.experts.size(), b.experts.size());
      EXPECT_EQ(a.router, b.router) << layer;
      for (std::size_t e = 0; e < a.experts.size(); ++e)
        for (LinearRole role : {LinearRole::gate, LinearRole::up, LinearRole::down})
          EXPECT_EQ(a.experts[e].weight(role), b.experts[e].weight(role))
              << layer << " expert " << e << " " << linear_role_name(role);
    }
    expect_llama_perplexity_scores(dir / "q8_0/model.gguf", dir / "ppl.log");
  }
}

TEST(GgufQuantize, GptqQ40LoadsInLlamaCppAndIsSmall) {
  const auto dir = test::temp_dir("gguf-gptq");
  const std::string calib = test::fixture("goldens/tiny/calib_generic.ids").string();
  ASSERT_EQ(ptq_quantize("--method gptq --format gguf --gguf-type Q4_0 --calib-ids " + calib +
                             " --samples 8 --seqlen 128 --out " + (dir / "out").string(),
                         dir / "ptq.log"),
            0)
      << test::read_bytes(dir / "ptq.log");
  const auto file = gguf::File::open(dir / "out/model.gguf");
  constexpr std::uint32_t kQ4_0 = 2;
  EXPECT_EQ(file->require_tensor("blk.0.attn_q.weight").type, kQ4_0);
  // The whole folder (GGUF, record, card, run log) is smaller than the float16 source.
  EXPECT_LT(folder_bytes(dir / "out"),
            std::filesystem::file_size(test::fixture("models/tiny/model.safetensors")));
  expect_llama_perplexity_scores(dir / "out/model.gguf", dir / "ppl.log");
}

TEST(GgufQuantize, MismatchesAreRefusedBeforeAnyWork) {
  const auto dir = test::temp_dir("gguf-refused");
  const std::string calib =
      " --calib-ids " + test::fixture("goldens/tiny/calib_generic.ids").string();
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {"--method w8a8 --format gguf --gguf-type Q4_0" + calib, "format gguf"},
      {"--method nf4 --format gguf --gguf-type Q4_0", "format gguf"},
      {"--method awq --format gguf --gguf-type Q6_K" + calib, "a type AWQ rounds onto"},
      {"--method awq --format gguf --gguf-type Q4_0 --imatrix " +
           test::fixture("gguf/tiny-imatrix.gguf").string() + calib,
       "imatrix"},
      {"--method rtn --format gguf --gguf-type Q9_X", "gguf_type"},
      {"--method none --format gguf --gguf-type Q4_0", "method none"},
      {"--method rtn --gguf-type Q4_0", "format gguf"},
      {"--method rtn --format gguf --gguf-type auto" + calib, "one of mix.max_bytes"},
      {"--method rtn --format gguf --gguf-type auto --max-bytes 3000000 --bpw 4" + calib,
       "2 of them"},
      {"--method awq --format gguf --gguf-type auto --bpw 4" + calib, "method gptq or rtn"},
      {"--method rtn --format gguf --gguf-type auto --bpw 4 --mix-candidates Q4_K,F16" + calib,
       "\"F16\""},
      {"--method rtn --format gguf --gguf-type Q4_K_M --max-bytes 3000000", "gguf_type auto"},
      {"--method rtn --format gguf --gguf-type auto --max-bytes 1000" + calib,
       "--max-bytes 1000: expected a budget of at least"},
      {"--method rtn --format gguf --gguf-type Q4_K_M --gguf-refit scales",
       "gguf_refit: expected format gguf with method gptq"},
      {"--method gptq --gguf-refit none" + calib, "gguf_refit: expected format gguf with method gptq"},
      {"--method gptq --format gguf --gguf-type Q4_K_M --gguf-refit all" + calib,
       "none | scales | sub_scales"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const auto out = dir / "out";
    EXPECT_NE(ptq_quantize(c.args + " --out " + out.string(), dir / "log"), 0);
    EXPECT_NE(test::read_bytes(dir / "log").find(c.message), std::string::npos)
        << test::read_bytes(dir / "log");
    EXPECT_FALSE(std::filesystem::exists(out));
  }
}

// --gguf-type auto with one candidate is that type everywhere: RTN gives
// llama-quantize --pure's file (the fixture), tensor for tensor.
TEST(GgufMix, OneCandidateIsLlamaQuantizePure) {
  const auto dir = test::temp_dir("gguf-mix-pure");
  ASSERT_EQ(ptq_quantize("--method rtn --format gguf --gguf-type auto --bpw 16 --mix-candidates "
                         "Q4_0 --sensitivity-windows 1 --samples 4 --seqlen 64 --calib-ids " +
                             test::fixture("goldens/tiny/calib_generic.ids").string() + " --out " +
                             (dir / "out").string(),
                         dir / "ptq.log"),
            0)
      << test::read_bytes(dir / "ptq.log");
  expect_same_tensors(dir / "out/model.gguf", test::fixture("gguf/tiny-Q4_0.gguf"));
}

// The type of every tensor of the file and of mix.json.
std::map<std::string, std::string> file_types(const std::filesystem::path& path) {
  std::map<std::string, std::string> types;
  const auto file = gguf::File::open(path);
  for (const gguf::TensorInfo& t : file->tensors())
    types[t.name] = std::string(gguf::find_tensor_type(t.type)->name);
  return types;
}
std::map<std::string, std::string> listed_types(const std::filesystem::path& path) {
  std::map<std::string, std::string> types;
  const auto j = nlohmann::json::parse(test::read_bytes(path));
  for (const auto& t : j["tensors"]) types[t["name"]] = t["type"];
  return types;
}

// AWQ into GGUF on a mixture (Q4_1): each Linear rounds onto its own tensor's
// type (Mixtral's 8 experts give attn_k and attn_v Q8_0), the experts' and the
// router's folds included; llama.cpp loads the file, and against the float
// model its KL is below that of llama-quantize's Q4_1 rounding (ptq's RTN).
TEST(GgufQuantize, MixtureAwqRoundsOntoEachTensorsType) {
  for (const std::string model : {"mixtral", "qwen3moe"}) {
    SCOPED_TRACE(model);
    const auto source = test::tiny_as(model);
    const auto dir = test::temp_dir("gguf-awq-" + model);
    const std::string calibration = " --calib-ids " +
                                    test::fixture("goldens/tiny/calib_generic.ids").string() +
                                    " --samples 8 --seqlen 128";
    auto kl = [&](const std::string& method) {
      const auto out = dir / method;
      EXPECT_EQ(test::run_ptq("quantize --model " + source.string() + " --method " + method +
                                  " --format gguf --gguf-type Q4_1" +
                                  (method == "awq" ? calibration : "") + " --out " + out.string(),
                              dir / (method + ".log")),
                0)
          << test::read_bytes(dir / (method + ".log"));
      const auto json = dir / (method + ".json");
      EXPECT_EQ(
          test::run_ptq("eval --model " + out.string() + " --reference " + source.string() +
                            " --ids " + test::fixture("goldens/tiny/eval_generic.ids").string() +
                            " --ctx 128 --max-windows 16 --json " + json.string(),
                        dir / "eval.log"),
          0)
          << test::read_bytes(dir / "eval.log");
      return nlohmann::json::parse(test::read_bytes(json))["kl"].get<double>();
    };
    const double awq = kl("awq"), rtn = kl("rtn");
    std::printf("%s: KL AWQ %.5f, RTN %.5f\n", model.c_str(), awq, rtn);
    EXPECT_LT(awq, rtn);
    const auto types = file_types(dir / "awq/model.gguf");
    EXPECT_EQ(types.at("blk.0.attn_k.weight"), model == "mixtral" ? "Q8_0" : "Q4_1");
    EXPECT_EQ(types.at("blk.0.ffn_down_exps.weight"), "Q4_1");
    EXPECT_EQ(types.at("blk.0.ffn_gate_inp.weight"), "F32");
    expect_llama_perplexity_scores(dir / "awq/model.gguf", dir / "ppl.log");
  }
}

// A measured mix fits its budget, mixes types and loads in llama.cpp;
// mix.json lists the file's types; replaying it gives the same bytes, and solving its costs again
// (no calibration) the same choice, or, with more bytes, no worse a prediction.
TEST(GgufMix, FitsTheBudgetAndReplays) {
  const auto dir = test::temp_dir("gguf-mix");
  constexpr std::uintmax_t kBudget = 2600000;  // between Q4_K_M's and Q5_K_M's files
  ASSERT_EQ(ptq_quantize("--method rtn --format gguf --gguf-type auto --max-bytes 2600000 "
                         "--sensitivity-windows 2 --samples 16 --seqlen 128 --calib-ids " +
                             test::fixture("goldens/tiny/calib_generic.ids").string() + " --out " +
                             (dir / "mix").string(),
                         dir / "mix.log"),
            0)
      << test::read_bytes(dir / "mix.log");
  const auto mix = dir / "mix/model.gguf";
  EXPECT_LE(std::filesystem::file_size(mix), kBudget);
  EXPECT_GT(std::filesystem::file_size(mix), kBudget - 30000);  // the budget is used
  std::map<std::string, std::string> listed = listed_types(dir / "mix/mix.json");
  std::set<std::string> used;
  for (const auto& [name, type] : file_types(mix)) {
    if (type == "F32") continue;
    EXPECT_EQ(listed[name], type) << name;
    used.insert(type);
  }
  EXPECT_GE(used.size(), 2u);
  expect_llama_perplexity_scores(mix, dir / "ppl.log");

  const std::string json = (dir / "mix/mix.json").string();
  ASSERT_EQ(ptq_quantize("--method rtn --format gguf --gguf-type auto --mix-types " + json +
                             " --out " + (dir / "replay").string(),
                         dir / "replay.log"),
            0)
      << test::read_bytes(dir / "replay.log");
  EXPECT_EQ(test::read_bytes(dir / "replay/model.gguf"), test::read_bytes(mix));

  auto solve = [&](const std::string& budget, const std::string& name) {
    EXPECT_EQ(ptq_quantize("--method rtn --format gguf --gguf-type auto " + budget +
                               " --mix-costs " + json + " --out " + (dir / name).string(),
                           dir / (name + ".log")),
              0)
        << test::read_bytes(dir / (name + ".log"));
    return nlohmann::json::parse(test::read_bytes(dir / name / "mix.json"));
  };
  const auto same = solve("--max-bytes 2600000", "same");
  EXPECT_EQ(listed_types(dir / "same/mix.json"), listed);
  const auto more = solve("--max-bytes 3000000", "more");
  EXPECT_LE(more["predicted"].get<double>(), same["predicted"].get<double>());
  EXPECT_LE(std::filesystem::file_size(dir / "more/model.gguf"), 3000000u);
}

// Each candidate's output error per tensor, from a mix's mix.json.
std::map<std::string, std::map<std::string, double>> output_errors(
    const std::filesystem::path& json) {
  std::map<std::string, std::map<std::string, double>> errors;
  const auto record = nlohmann::json::parse(test::read_bytes(json));
  for (const auto& t : record["tensors"])
    for (const auto& [type, cell] : t["candidates"].items())
      errors[t["name"]][type] = cell["output_error"].get<double>();
  return errors;
}

// A GGUF mix prices a tensor that holds several Linears whole: Phi-3's attn_qkv
// and ffn_up (q/k/v, gate/up fused), a mixture's stacked experts. tiny as
// Phi-3 is tiny (its fused rows are tiny's Linears), and tiny as a Mixtral of
// one expert too: their tensors' output errors at every candidate are tiny's,
// a fused tensor's the sum of its parts' (each part's own H, ggml's rows
// rounded alike). A Qwen3-MoE of four experts (each expert's H over the tokens
// routed to it) gets the file its mix.json lists, which llama.cpp runs.
TEST(GgufMix, FusedAndStackedTensorsArePricedWhole) {
  const auto dir = test::temp_dir("gguf-mix-fused");
  const std::string args =
      " --method rtn --format gguf --gguf-type auto --bpw 5.5 "
      "--mix-candidates Q4_K,Q6_K --sensitivity-windows 1 --samples 8 "
      "--seqlen 128 --calib-ids " +
      test::fixture("goldens/tiny/calib_generic.ids").string() + " --out ";
  const auto run = [&](const std::string& name, const std::filesystem::path& model) {
    EXPECT_EQ(test::run_ptq("quantize --model " + model.string() + args + (dir / name).string(),
                            dir / (name + ".log")),
              0)
        << test::read_bytes(dir / (name + ".log"));
    return output_errors(dir / name / "mix.json");
  };
  const auto tiny = run("tiny", test::fixture("models/tiny"));
  const auto phi3 = run("phi3", test::tiny_as("phi3"));
  const auto mixtral = run("mixtral1", test::tiny_as("mixtral1"));
  const auto sum_of = [&](int layer, std::initializer_list<const char*> parts,
                          const std::string& type) {
    double sum = 0;
    for (const char* part : parts)
      sum += tiny.at("blk." + std::to_string(layer) + "." + part + ".weight").at(type);
    return sum;
  };
  for (const std::string type : {"Q4_K", "Q6_K"}) {
    for (int layer = 0; layer < 4; ++layer) {
      const std::string blk = "blk." + std::to_string(layer) + ".";
      EXPECT_NEAR(phi3.at(blk + "attn_qkv.weight").at(type),
                  sum_of(layer, {"attn_q", "attn_k", "attn_v"}, type),
                  1e-6 * sum_of(layer, {"attn_q", "attn_k", "attn_v"}, type))
          << blk << type;
      EXPECT_NEAR(phi3.at(blk + "ffn_up.weight").at(type),
                  sum_of(layer, {"ffn_gate", "ffn_up"}, type),
                  1e-6 * sum_of(layer, {"ffn_gate", "ffn_up"}, type))
          << blk << type;
      for (const char* role : {"ffn_gate", "ffn_up", "ffn_down"})
        EXPECT_NEAR(mixtral.at(blk + role + "_exps.weight").at(type), sum_of(layer, {role}, type),
                    1e-6 * sum_of(layer, {role}, type))
            << blk << role << " " << type;
    }
  }
  run("qwen3moe", test::tiny_as("qwen3moe"));
  const auto listed = listed_types(dir / "qwen3moe/mix.json");
  for (const auto& [name, type] : file_types(dir / "qwen3moe/model.gguf"))
    if (type != "F32") {
      EXPECT_EQ(listed.at(name), type) << name;
    }
  EXPECT_EQ(listed.count("blk.0.ffn_gate_exps.weight"), 1u);
  expect_llama_perplexity_scores(dir / "qwen3moe/model.gguf", dir / "ppl.log");
}

}  // namespace
}  // namespace ptq
