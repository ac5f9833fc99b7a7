// The GGUF model layer (pipeline/formats/gguf_model.hpp) against llama.cpp:
// ptq's F16 file of tiny has the tensor bytes and the llama.cpp-read keys of
// the converter's (fixtures/gguf/tiny-f16.gguf); llama-perplexity loads and
// runs ptq's files of tiny and of the random Llama/Mistral/Qwen2/Qwen3/llama3
// checkpoints; the reader gives the checkpoint's tensors and config back.
#include "pipeline/formats/gguf_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "io/gguf.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

fs::path tiny_dir() { return test::fixture("models/tiny"); }
fs::path random_model(const std::string& name) {
  return test::source_dir() / "tests/data/models" / name;
}

// ---- comparing metadata values, with messages that show the difference ----

std::string show(const gguf::Value& v);

std::string show_array(const gguf::Array& a) {
  std::string out = "[" + std::to_string(a.items.size()) + " x " +
                    std::string(gguf::value_type_name(a.element_type)) + "]";
  return out;
}

std::string show(const gguf::Value& v) {
  std::ostringstream s;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, gguf::Array>) {
          s << show_array(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          s << "'" << x.substr(0, 60) << "'";
        } else if constexpr (sizeof(T) == 1) {
          s << static_cast<int>(x);
        } else {
          s << x;
        }
      },
      v.data);
  return std::string(gguf::value_type_name(v.type)) + " " + s.str();
}

// "" when equal, else where they differ.
std::string difference(const gguf::Value& a, const gguf::Value& b) {
  if (a.type != b.type) return "type " + show(a) + " vs " + show(b);
  if (a.type != gguf::ValueType::array) {
    const bool equal = std::visit(
        [](const auto& x, const auto& y) {
          if constexpr (std::is_same_v<decltype(x), decltype(y)> &&
                        !std::is_same_v<std::decay_t<decltype(x)>, gguf::Array>) {
            return x == y;
          } else {
            return false;
          }
        },
        a.data, b.data);
    return equal ? "" : show(a) + " vs " + show(b);
  }
  const auto& x = std::get<gguf::Array>(a.data);
  const auto& y = std::get<gguf::Array>(b.data);
  if (x.element_type != y.element_type || x.items.size() != y.items.size())
    return show_array(x) + " vs " + show_array(y);
  for (std::size_t i = 0; i < x.items.size(); ++i) {
    if (auto d = difference(x.items[i], y.items[i]); !d.empty())
      return "item " + std::to_string(i) + ": " + d;
  }
  return "";
}

// The keys llama.cpp reads (names and size labels are free to differ).
bool llama_cpp_reads(const std::string& key) {
  return key == "general.architecture" || key == "general.file_type" ||
         key == "general.quantization_version" || key == "general.alignment" ||
         key.starts_with("llama.") || key.starts_with("tokenizer.ggml.");
}

void expect_same_keys(const gguf::File& ours, const gguf::File& theirs) {
  for (const auto& [key, value] : theirs.metadata()) {
    if (!llama_cpp_reads(key)) continue;
    const gguf::Value* mine = ours.find(key);
    if (mine == nullptr) {
      ADD_FAILURE() << "key " << key << " missing from ptq's file (converter: " << show(value)
                    << ")";
      continue;
    }
    EXPECT_EQ(difference(*mine, value), "") << "key " << key << " (ptq vs converter)";
  }
  for (const auto& [key, value] : ours.metadata()) {
    if (llama_cpp_reads(key) && theirs.find(key) == nullptr)
      ADD_FAILURE() << "key " << key << " = " << show(value) << " only in ptq's file";
  }
}

fs::path write_f16(const fs::path& model_dir, const std::string& test,
                   GgufFloatType type = GgufFloatType::f16) {
  const fs::path out = test::temp_dir(test) / "model.gguf";
  write_float_gguf(model_dir, out, type);
  return out;
}

TEST(GgufModel, TinyF16HasTheConvertersTensorBytesAndKeys) {
  const auto ours = gguf::File::open(write_f16(tiny_dir(), "gguf_model_tiny_f16"));
  const auto theirs = gguf::File::open(test::fixture("gguf/tiny-f16.gguf"));
  ASSERT_EQ(ours->tensors().size(), theirs->tensors().size());
  for (std::size_t i = 0; i < theirs->tensors().size(); ++i) {
    const auto& a = ours->tensors()[i];
    const auto& b = theirs->tensors()[i];
    EXPECT_EQ(a.name, b.name) << "tensor " << i << " (order)";
    EXPECT_EQ(a.ne, b.ne) << b.name;
    EXPECT_EQ(a.type, b.type) << b.name;
    EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), b.data.begin(), b.data.end()))
        << b.name << ": data bytes differ";
  }
  EXPECT_EQ(ours->alignment(), theirs->alignment());
  expect_same_keys(*ours, *theirs);
  // Not read by llama.cpp, but shown by every GGUF viewer: the converter's "4.2M".
  EXPECT_EQ(ours->require("general.size_label").as_string("size_label"),
            theirs->require("general.size_label").as_string("size_label"));
}

// ---- llama.cpp loads what we write ----

// tiny's tokenizer cut to its first `keep` ids (the merges among them), for
// the random checkpoints (vocab 512, no tokenizer of their own): the rest of
// their embedding rows become [PADi] tokens, as the converter pads.
void write_cut_tokenizer(const fs::path& dir, int keep) {
  std::ifstream in(tiny_dir() / "tokenizer.json");
  auto j = nlohmann::ordered_json::parse(in);
  auto& model = j.at("model");
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (const auto& [token, id] : model.at("vocab").items()) {
    if (id.get<int>() < keep) vocab[token] = id;
  }
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (const auto& m : model.at("merges")) {
    const auto whole = m[0].get<std::string>() + m[1].get<std::string>();
    if (vocab.contains(whole)) merges.push_back(m);
  }
  model["vocab"] = vocab;
  model["merges"] = merges;
  std::ofstream(dir / "tokenizer.json") << j.dump();
  // No bos/eos token here: the ids come from config.json (1 and 2).
  std::ofstream(dir / "tokenizer_config.json") << R"({"tokenizer_class": "TokenizersBackend"})";
}

// A model folder: the random checkpoint's files beside a cut tiny tokenizer.
// In a folder named `folder` (the files' general.name), by default the model's name.
fs::path random_model_with_tokenizer(const std::string& name, const std::string& folder = "") {
  const fs::path dir = test::temp_dir("gguf_model_src_" + name) / (folder.empty() ? name : folder);
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(random_model(name))) {
    if (f.path().extension() == ".json" || f.path().extension() == ".safetensors")
      fs::copy_file(f.path(), dir / f.path().filename());
  }
  write_cut_tokenizer(dir, 500);
  return dir;
}

fs::path eval_text() {
  const fs::path path = test::temp_dir("gguf_model_text") / "text.txt";
  std::ifstream in(test::fixture("corpus/generic_eval/wikitext2_test.txt"), std::ios::binary);
  std::string text(40000, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// llama-perplexity's "Final estimate: PPL = X"; fails the test when it does not
// run. Its logger writes from a worker thread that exit sometimes cuts short
// (about 1 run in 6 here loses the last lines, exit status 0), so a run
// without the estimate is repeated; the computation itself is deterministic.
double llama_perplexity(const fs::path& model, const std::string& test) {
  constexpr int kAttempts = 5;
  const fs::path tool = test::shared_dir() / "tools/llama.cpp/llama-perplexity";
  const fs::path log = test::temp_dir(test + "_log") / "perplexity.log";
  const std::string command = tool.string() + " -m " + model.string() + " -f " +
                              eval_text().string() + " -c 128 --chunks 2 -t 2 > " + log.string() +
                              " 2>&1";
  const std::regex estimate("Final estimate: PPL = ([0-9.eE+-]+|nan|inf)");
  std::string output;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const int rc = std::system(command.c_str());
    output = test::read_bytes(log);
    if (rc != 0) {
      ADD_FAILURE() << command << " exited with " << rc << ":\n" << output;
      return NAN;
    }
    std::smatch m;
    if (std::regex_search(output, m, estimate)) return std::stod(m[1].str());
  }
  ADD_FAILURE() << "no perplexity in llama-perplexity's output:\n" << output;
  return NAN;
}

TEST(GgufModel, LlamaCppRunsPtqsTinyF16) {
  const double ppl = llama_perplexity(write_f16(tiny_dir(), "gguf_model_ppl_tiny"), "ppl_tiny");
  EXPECT_TRUE(std::isfinite(ppl)) << ppl;
}

// llama.cpp's llama graph rotates adjacent pairs (NORM rope) on the permuted
// q/k rows; its qwen2 graph is the same model with HF's halves (NEOX rope) on
// unpermuted rows. Mistral's checkpoint written both ways must score the same:
// a wrong permutation would change every attention score.
TEST(GgufModel, LlamaRowPermutationMatchesNeoxRope) {
  const fs::path dir = random_model_with_tokenizer("mistral");
  const double as_llama = llama_perplexity(write_f16(dir, "gguf_model_as_llama"), "ppl_as_llama");
  ModelConfig as_qwen2 = load_model_config(dir);
  as_qwen2.arch = Architecture::Qwen2;
  const Checkpoint checkpoint = Checkpoint::open(dir);
  const auto plan = gguf_tensor_plan(as_qwen2, checkpoint);
  for (const auto& p : plan) ASSERT_EQ(p.rope_heads, 0) << p.gguf_name;
  const fs::path qwen2_file = test::temp_dir("gguf_model_as_qwen2") / "model.gguf";
  write_gguf_model(qwen2_file, gguf_metadata(dir, as_qwen2, {}), plan, [&](const auto& p) {
    return gguf_float_tensor(p, checkpoint, as_qwen2, GgufFloatType::f16);
  });
  const double as_neox = llama_perplexity(qwen2_file, "ppl_as_qwen2");
  EXPECT_NEAR(as_llama, as_neox, 1e-4 * as_neox);
}

// Mistral's random checkpoint with Llama 2's SentencePiece-style tokenizer
// (32000 tokens): new random embedding and output rows for that vocabulary.
fs::path random_model_with_llama2_tokenizer() {
  const fs::path dir = test::temp_dir("gguf_model_spm") / "mistral-spm";
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(test::fixture("tokenizers/llama2-hf") / f, dir / f);
  std::ifstream in(random_model("mistral") / "config.json");
  auto config = nlohmann::ordered_json::parse(in);
  constexpr std::int64_t kVocab = 32000;
  config["vocab_size"] = kVocab;
  std::ofstream(dir / "config.json") << config.dump();
  const Checkpoint source = Checkpoint::open(random_model("mistral"));
  std::vector<TensorToWrite> tensors;
  for (const TensorView* t : source.tensors()) {
    if (t->name != "model.embed_tokens.weight" && t->name != "lm_head.weight")
      tensors.push_back({t->name, t->dtype, t->shape, t->bytes});
  }
  const std::int64_t hidden = config.at("hidden_size").get<std::int64_t>();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.15f);
  std::vector<std::uint16_t> rows(static_cast<std::size_t>(kVocab * hidden));
  for (auto& h : rows) h = float_to_half(normal(rng));
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(rows.data()),
                                         rows.size() * 2);
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"})
    tensors.push_back({name, DType::F16, {kVocab, hidden}, bytes});
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

std::int32_t token_type_of(const gguf::File& file, const std::string& token) {
  const auto& tokens = file.require("tokenizer.ggml.tokens").as_array("tokens").items;
  const auto& types = file.require("tokenizer.ggml.token_type").as_array("types").items;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].as_string("token") == token)
      return static_cast<std::int32_t>(types[i].as_int("type"));
  }
  return -1;
}

TEST(GgufModel, LlamaCppRunsASentencePieceVocabulary) {
  const fs::path file = write_f16(random_model_with_llama2_tokenizer(), "gguf_model_spm_file");
  const auto gguf_file = gguf::File::open(file);
  EXPECT_EQ(gguf_file->require("tokenizer.ggml.model").as_string("model"), "llama");
  EXPECT_EQ(gguf_file->require("tokenizer.ggml.scores").as_array("scores").items.size(), 32000u);
  EXPECT_EQ(gguf_file->require("tokenizer.ggml.unknown_token_id").as_int("unk"), 0);
  EXPECT_TRUE(gguf_file->require("tokenizer.ggml.add_bos_token").as_bool("add_bos"));
  EXPECT_EQ(token_type_of(*gguf_file, "<0x0A>"), 6);           // byte
  EXPECT_EQ(token_type_of(*gguf_file, "<s>"), 3);              // control
  EXPECT_EQ(token_type_of(*gguf_file, "\xE2\x96\x81the"), 1);  // "▁the": normal
  const double ppl = llama_perplexity(file, "ppl_spm");
  EXPECT_TRUE(std::isfinite(ppl)) << ppl;
}

// GemmaTokenizer's pipeline (tokenizer_config.json naming the class) puts no
// "▁" before the text: the file says so (add_space_prefix false), and
// llama.cpp then tokenizes the text as ptq does. Llama 2's own pipeline keeps
// llama.cpp's default.
TEST(GgufModel, GemmaClassTokenizerGivesLlamaCppTheSameTokens) {
  const fs::path dir = random_model_with_llama2_tokenizer();
  EXPECT_EQ(gguf::File::open(write_f16(dir, "gguf_model_spm_prefix"))
                ->find("tokenizer.ggml.add_space_prefix"),
            nullptr);
  auto config = nlohmann::json::parse(test::read_bytes(dir / "tokenizer_config.json"));
  config["tokenizer_class"] = "GemmaTokenizer";
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  const fs::path out = test::temp_dir("gguf_model_gemma_tokens");
  write_float_gguf(dir, out / "model.gguf", GgufFloatType::f16);
  const auto file = gguf::File::open(out / "model.gguf");
  EXPECT_FALSE(file->require("tokenizer.ggml.add_space_prefix").as_bool("add_space_prefix"));
  const fs::path base = out.parent_path() / "gemma_tokens.kld";
  const std::string tool = (test::shared_dir() / "tools/llama.cpp/llama-perplexity").string();
  ASSERT_EQ(
      std::system((tool + " -m " + (out / "model.gguf").string() + " -f " + eval_text().string() +
                   " -c 128 --chunks 4 -t 2 --kl-divergence-base " + base.string() + " > " +
                   (out.parent_path() / "base.log").string() + " 2>&1")
                      .c_str()),
      0)
      << test::read_bytes(out.parent_path() / "base.log");
  const fs::path json = out.parent_path() / "eval.json";
  ASSERT_EQ(test::run_ptq("eval --model " + out.string() + " --reference " + dir.string() +
                              " --text " + eval_text().string() + " --llamacpp-base " +
                              base.string() + " --json " + json.string(),
                          out.parent_path() / "eval.log"),
            0)
      << test::read_bytes(out.parent_path() / "eval.log");
  EXPECT_TRUE(nlohmann::json::parse(test::read_bytes(json))["llamacpp_base"]["tokens_match"]);
}

class GgufRandomModel : public testing::TestWithParam<std::string> {
 protected:
  // Qwen3's and the mixtures' checkpoints are bf16: their files are bf16 too,
  // so every value survives.
  GgufFloatType float_type() const {
    const bool bf16 = GetParam() == "qwen3" || GetParam().starts_with("mixtral") ||
                      GetParam().starts_with("qwen3moe");
    return bf16 ? GgufFloatType::bf16 : GgufFloatType::f16;
  }
};

TEST_P(GgufRandomModel, LlamaCppRunsIt) {
  const fs::path dir = random_model_with_tokenizer(GetParam());
  const fs::path file = write_f16(dir, "gguf_model_ppl_" + GetParam(), float_type());
  const double ppl = llama_perplexity(file, "ppl_" + GetParam());
  EXPECT_TRUE(std::isfinite(ppl)) << GetParam() << ": " << ppl;
}

// ---- the reader ----

void expect_same_config(const ModelConfig& a, const ModelConfig& b, const std::string& what) {
  EXPECT_EQ(a.hidden_size, b.hidden_size) << what;
  EXPECT_EQ(a.intermediate_size, b.intermediate_size) << what;
  EXPECT_EQ(a.num_layers, b.num_layers) << what;
  EXPECT_EQ(a.num_heads, b.num_heads) << what;
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads) << what;
  EXPECT_EQ(a.head_dim, b.head_dim) << what;
  EXPECT_EQ(a.vocab_size, b.vocab_size) << what;
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings) << what;
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps) << what;
  EXPECT_EQ(a.rope.theta, b.rope.theta) << what;
  EXPECT_EQ(a.rope.type, b.rope.type) << what;
  if (b.rope.type == RopeType::Llama3) {
    EXPECT_EQ(a.rope.factor, b.rope.factor) << what;
    EXPECT_EQ(a.rope.low_freq_factor, b.rope.low_freq_factor) << what;
    EXPECT_EQ(a.rope.high_freq_factor, b.rope.high_freq_factor) << what;
    EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings)
        << what;
  }
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings) << what;
  EXPECT_EQ(a.attention_bias, b.attention_bias) << what;
  EXPECT_EQ(a.mlp_bias, b.mlp_bias) << what;
  EXPECT_EQ(a.qk_norm, b.qk_norm) << what;
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids) << what;
  EXPECT_EQ(a.bos_token_id, b.bos_token_id) << what;
  EXPECT_EQ(a.moe.experts, b.moe.experts) << what;
  EXPECT_EQ(a.moe.experts_per_token, b.moe.experts_per_token) << what;
  EXPECT_EQ(a.moe.intermediate_size, b.moe.intermediate_size) << what;
  EXPECT_EQ(a.moe.normalize_top_k, b.moe.normalize_top_k) << what;
  EXPECT_EQ(a.moe.layers, b.moe.layers) << what;
}

// Every HF tensor of the file equals the checkpoint's (exactly: F16/BF16 kept).
// A stacked expert tensor's parts are compared with the rows the writer's plan
// took them from (per-expert tensors, or v5's stacked ones).
void expect_tensors_read_back(const gguf::File& file, const fs::path& model_dir) {
  const ModelConfig config = gguf_model_config(file);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  std::map<std::string, GgufTensorPlan> written;
  for (GgufTensorPlan& p : gguf_tensor_plan(load_model_config(model_dir), checkpoint))
    written[p.gguf_name] = std::move(p);
  std::set<std::string> compared;
  for (const GgufTensorPlan& plan : gguf_file_plan(file, config)) {
    if (plan.generated()) continue;
    const MatrixRM W = read_gguf_tensor(file, plan);
    const GgufTensorPlan& source_plan = written.at(plan.gguf_name);
    const std::int64_t part_rows = plan.experts.empty() ? W.rows() : plan.ne.at(1);
    for (std::int64_t first = 0; first < W.rows(); first += part_rows) {
      const std::size_t i = static_cast<std::size_t>(first / part_rows);
      const std::string name =
          plan.experts.empty() ? source_plan.hf_name : source_plan.experts[i].source;
      const std::int64_t source_row = plan.experts.empty() ? 0 : source_plan.experts[i].source_row;
      const std::vector<float> source = checkpoint.require(name).to_float();
      const auto offset = static_cast<std::size_t>(source_row * W.cols());
      ASSERT_LE(offset + static_cast<std::size_t>(part_rows * W.cols()), source.size()) << name;
      for (std::int64_t k = 0; k < part_rows * W.cols(); ++k)
        ASSERT_EQ(W.data()[first * W.cols() + k], source[offset + static_cast<std::size_t>(k)])
            << plan.gguf_name << " from " << name << " element " << k;
      compared.insert(name);
    }
  }
  EXPECT_EQ(compared.size(), checkpoint.tensors().size()) << model_dir;
}

TEST(GgufModel, ReaderGivesTinyBack) {
  const auto file = gguf::File::open(write_f16(tiny_dir(), "gguf_model_read_tiny"));
  expect_same_config(gguf_model_config(*file), load_model_config(tiny_dir()), "tiny");
  expect_tensors_read_back(*file, tiny_dir());
}

void expect_reader_gives_back(const fs::path& dir, const fs::path& gguf_file,
                              const std::string& name) {
  const auto file = gguf::File::open(gguf_file);
  const ModelConfig read = gguf_model_config(*file);
  const ModelConfig source = load_model_config(dir);
  expect_same_config(read, source, name);
  // "llama" files come from Llama and Mistral alike (and Mixtral, told by its experts).
  EXPECT_EQ(read.arch, source.arch == Architecture::Mistral ? Architecture::Llama : source.arch);
  // Factors travel as float32: equal to float32 precision.
  for (const auto& [a, b] : {std::pair{&read.rope.short_factor, &source.rope.short_factor},
                             std::pair{&read.rope.long_factor, &source.rope.long_factor}}) {
    ASSERT_EQ(a->size(), b->size()) << name;
    for (std::size_t i = 0; i < a->size(); ++i)
      EXPECT_NEAR((*a)[i], (*b)[i], 1e-6 * (*b)[i]) << name;
  }
  EXPECT_NEAR(read.rope.attention_factor, source.rope.attention_factor, 1e-6) << name;
  expect_tensors_read_back(*file, dir);
}

TEST_P(GgufRandomModel, ReaderGivesItBack) {
  const fs::path dir = random_model_with_tokenizer(GetParam());
  expect_reader_gives_back(dir, write_f16(dir, "gguf_model_read_" + GetParam(), float_type()),
                           GetParam());
}

// Phi-3's file (attn_qkv, ffn_up holding gate then up; LongRoPE's factor
// tensors and keys) loads in llama.cpp and reads back in ptq. The folder is
// not named phi3: llama.cpp would take the cut test vocabulary for Phi-3's own.
TEST(GgufModel, Phi3RunsInLlamaCppAndReadsBack) {
  for (const std::string name : {"phi3", "phi3-longrope"}) {
    const fs::path dir = random_model_with_tokenizer(name, "fused");
    const fs::path file = write_f16(dir, "gguf_model_fused_" + name);
    EXPECT_TRUE(std::isfinite(llama_perplexity(file, "ppl_fused_" + name))) << name;
    expect_reader_gives_back(dir, file, name);
  }
}

// A model named phi3 whose vocabulary lacks Phi-3's special tokens would make
// llama.cpp's loader fail (unordered_map::at): refused before writing, naming why.
TEST(GgufModel, Phi3NameWithoutPhi3TokensIsRefused) {
  const fs::path dir = random_model_with_tokenizer("phi3");
  try {
    gguf_metadata(dir, load_model_config(dir), {});
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("general.name \"phi3\""), std::string::npos) << what;
    EXPECT_NE(what.find("</s>"), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(GgufModel, GgufRandomModel,
                         testing::Values("qwen2", "qwen3", "llama3rope", "llama3rope_band",
                                         "mistral", "mixtral", "mixtral-fused", "qwen3moe",
                                         "qwen3moe-fused"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---- Gemma ----

// The random Gemma checkpoint `name` with a tokenizer and `edit` applied to its config.json.
fs::path gemma_model(const std::string& name, const std::string& folder,
                     const std::function<void(nlohmann::json&)>& edit) {
  const fs::path dir = random_model_with_tokenizer(name, folder);
  auto config = nlohmann::json::parse(test::read_bytes(dir / "config.json"));
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

// What llama.cpp's Gemma loaders fix is refused when a config differs, naming
// the field: the random checkpoints scale queries by 1/sqrt(24) (llama.cpp:
// 1/sqrt(head_dim)), and Gemma 3's alternates sliding and full layers
// (llama.cpp: five sliding, then one full).
TEST(GgufModel, GemmaConfigsLlamaCppCannotRunAreRefusedByField) {
  const auto refusal = [](const fs::path& dir) {
    try {
      require_gguf_expressible(load_model_config(dir), dir.string());
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto keep = [](nlohmann::json&) {};
  const auto head_dim_scale = [](nlohmann::json& c) { c["query_pre_attn_scalar"] = 16; };
  EXPECT_NE(refusal(gemma_model("gemma2", "scale", keep)).find("query_pre_attn_scalar"),
            std::string::npos);
  EXPECT_EQ(refusal(gemma_model("gemma2", "ok", head_dim_scale)), "no error");
  EXPECT_NE(refusal(gemma_model("gemma3", "layers", head_dim_scale)).find("layer_types[1]"),
            std::string::npos);
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> gemma2_edits{
      {"tie_word_embeddings", [](nlohmann::json& c) { c["tie_word_embeddings"] = false; }},
      {"attn_logit_softcapping", [](nlohmann::json& c) { c["attn_logit_softcapping"] = nullptr; }},
      {"layer_types[0]", [](nlohmann::json& c) { c["layer_types"][0] = "full_attention"; }},
  };
  for (const auto& [field, edit] : gemma2_edits) {
    const std::string what = refusal(gemma_model("gemma2", field, [&](nlohmann::json& c) {
      head_dim_scale(c);
      edit(c);
    }));
    EXPECT_NE(what.find(field), std::string::npos) << what;
  }
  const auto gemma3_pattern = [&](nlohmann::json& c) {
    head_dim_scale(c);
    c.erase("layer_types");  // _sliding_window_pattern 6: four sliding layers
  };
  EXPECT_EQ(refusal(gemma_model("gemma3", "ok", gemma3_pattern)), "no error");
  const std::string local = refusal(gemma_model("gemma3", "local", [&](nlohmann::json& c) {
    gemma3_pattern(c);
    c["rope_parameters"]["sliding_attention"]["rope_theta"] = 20000.0;
  }));
  EXPECT_NE(local.find("sliding_attention"), std::string::npos) << local;
}

// A Gemma file (bf16, as the checkpoints) loads in llama.cpp and reads back as
// llama.cpp runs it: the
// config's Gemma fields as transformers', the norms as the converter stores
// them (1 + w, computed in float32), every other tensor exactly.
TEST(GgufModel, GemmaRunsInLlamaCppAndReadsBack) {
  for (const std::string name : {"gemma2", "gemma3"}) {
    const fs::path dir = gemma_model(name, "readback", [&](nlohmann::json& c) {
      c["query_pre_attn_scalar"] = 16;
      if (name == "gemma3") c.erase("layer_types");
    });
    const fs::path gguf_file = write_f16(dir, "gguf_model_gemma_" + name, GgufFloatType::bf16);
    EXPECT_TRUE(std::isfinite(llama_perplexity(gguf_file, "ppl_" + name))) << name;
    const auto file = gguf::File::open(gguf_file);
    const ModelConfig read = gguf_model_config(*file);
    const ModelConfig source = load_model_config(dir);
    expect_same_config(read, source, name);
    EXPECT_EQ(read.arch, source.arch);
    EXPECT_EQ(read.activation, Activation::gelu_tanh);
    EXPECT_TRUE(read.sandwich_norms);
    EXPECT_FALSE(read.norm_plus_one);  // the file holds 1 + w
    EXPECT_EQ(read.embed_scale, source.embed_scale);
    EXPECT_NEAR(read.query_scale, source.query_scale, 1e-12);
    EXPECT_EQ(read.attn_logit_softcap, source.attn_logit_softcap);
    EXPECT_EQ(read.final_logit_softcap, source.final_logit_softcap);
    EXPECT_EQ(read.sliding_window, source.sliding_window);
    EXPECT_EQ(read.sliding_layers, source.sliding_layers);
    EXPECT_EQ(read.local_rope.theta, source.local_rope.theta);
    const Checkpoint checkpoint = Checkpoint::open(dir);
    for (const GgufTensorPlan& plan : gguf_file_plan(*file, read)) {
      const MatrixRM W = read_gguf_tensor(*file, plan);
      const std::vector<float> values = checkpoint.require(plan.hf_name).to_float();
      const float offset = plan.hf_name.ends_with("norm.weight") ? 1.0f : 0.0f;
      ASSERT_EQ(static_cast<std::size_t>(W.size()), values.size()) << plan.hf_name;
      for (std::size_t i = 0; i < values.size(); ++i)
        ASSERT_EQ(W.data()[i], values[i] + offset) << plan.hf_name << " element " << i;
    }
  }
}

// The converter's Q4_K file dequantizes close to the float weights, with q/k
// rows back in HF order (a wrong order would be as far off as random rows).
TEST(GgufModel, ReaderDequantizesTheFixtureQ4K) {
  const auto file = gguf::File::open(test::fixture("gguf/tiny-Q4_K.gguf"));
  const ModelConfig config = gguf_model_config(*file);
  expect_same_config(config, load_model_config(tiny_dir()), "tiny-Q4_K");
  const Checkpoint checkpoint = Checkpoint::open(tiny_dir());
  constexpr double kMaxRelativeRms = 0.12;  // 4.5 bits per weight, tiny's weight spread
  for (const GgufTensorPlan& plan : gguf_file_plan(*file, config)) {
    const MatrixRM W = read_gguf_tensor(*file, plan);
    const std::vector<float> source = checkpoint.require(plan.hf_name).to_float();
    ASSERT_EQ(static_cast<std::size_t>(W.size()), source.size()) << plan.hf_name;
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < source.size(); ++i) {
      err += std::pow(double(W.data()[i]) - source[i], 2);
      norm += std::pow(double(source[i]), 2);
    }
    const double relative = std::sqrt(err / norm);
    if (plan.storage == GgufStorage::f32) {
      EXPECT_EQ(relative, 0.0) << plan.gguf_name << " is F32 in the file";
    } else {
      EXPECT_LT(relative, kMaxRelativeRms) << plan.gguf_name;
    }
  }
}

// ---- the plan ----

std::vector<std::string> gguf_names(const std::vector<GgufTensorPlan>& plan) {
  std::vector<std::string> names;
  for (const auto& p : plan) names.push_back(p.gguf_name);
  return names;
}

TEST(GgufModel, PlanOfQwen2IsTiedUnpermutedWithF32Biases) {
  const fs::path dir = random_model("qwen2");
  const auto plan = gguf_tensor_plan(load_model_config(dir), Checkpoint::open(dir));
  const auto names = gguf_names(plan);
  EXPECT_EQ(std::count(names.begin(), names.end(), "output.weight"), 0);
  for (const auto& p : plan) {
    EXPECT_EQ(p.rope_heads, 0) << p.gguf_name << ": qwen2 keeps HF's row order";
    EXPECT_EQ(p.storage == GgufStorage::f32, p.ne.size() == 1) << p.gguf_name;
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "blk.1.attn_k.bias"), names.end());
}

TEST(GgufModel, PlanOfLlama3RopeStartsWithRopeFreqs) {
  const fs::path dir = random_model("llama3rope_band");
  const ModelConfig config = load_model_config(dir);
  const auto plan = gguf_tensor_plan(config, Checkpoint::open(dir));
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan[0].gguf_name, "rope_freqs.weight");
  EXPECT_TRUE(plan[0].hf_name.empty());
  EXPECT_EQ(plan[0].ne, std::vector<std::int64_t>{config.head_dim / 2});
  // HF's llama3 rule in double precision: each factor is 1, `factor`, or between.
  const auto factors = llama3_rope_factors(config);
  const auto& r = config.rope;
  for (int i = 0; i < config.head_dim / 2; ++i) {
    const double wavelen = 2 * M_PI * std::pow(r.theta, 2.0 * i / config.head_dim);
    const double old_context = r.original_max_position_embeddings;
    double expected = 1;
    if (wavelen > old_context / r.low_freq_factor) {
      expected = r.factor;
    } else if (wavelen >= old_context / r.high_freq_factor) {
      const double smooth =
          (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      expected = 1 / ((1 - smooth) / r.factor + smooth);
    }
    EXPECT_NEAR(factors[static_cast<std::size_t>(i)], expected, 1e-5 * expected) << i;
  }
}

TEST(GgufModel, RopeRowOrderIsLlamasPermutation) {
  // Two heads of four rows: halves (0 1 | 2 3) become pairs (0 2 1 3).
  EXPECT_EQ(rope_row_order(8, 2), (std::vector<std::int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  MatrixRM W = MatrixRM::Random(24, 5);
  const MatrixRM original = W;
  permute_rows_for_gguf(W, 3);
  EXPECT_EQ(W.row(1), original.row(4));  // head 0: row 1 is x0's partner y0 = HF row 4
  unpermute_rows_from_gguf(W, 3);
  EXPECT_EQ(W, original);
  const auto order = rope_row_order(24, 3);
  const auto inverse = inverse_row_order(order);
  for (std::size_t i = 0; i < order.size(); ++i)
    EXPECT_EQ(inverse[static_cast<std::size_t>(order[i])], static_cast<std::int64_t>(i));
}

TEST(GgufModel, PermutedRowBytesMatchPermutedMatrix) {
  MatrixRM W = MatrixRM::Random(16, 3);
  const auto* bytes = reinterpret_cast<const std::byte*>(W.data());
  const auto permuted =
      permute_row_bytes({bytes, static_cast<std::size_t>(W.size()) * 4}, 12, rope_row_order(16, 2));
  permute_rows_for_gguf(W, 2);
  EXPECT_TRUE(
      std::equal(permuted.begin(), permuted.end(), reinterpret_cast<const std::byte*>(W.data())));
}

// A tensor llama.cpp's qwen2 loader has no place for is refused, naming it.
TEST(GgufModel, PlanRefusesATensorTheArchitectureCannotHold) {
  const fs::path source = random_model("qwen2");
  const fs::path dir = test::temp_dir("gguf_model_bad_qwen2");
  fs::copy_file(source / "config.json", dir / "config.json");
  const Checkpoint checkpoint = Checkpoint::open(source);
  std::vector<TensorToWrite> tensors;
  for (const TensorView* t : checkpoint.tensors())
    tensors.push_back({t->name, t->dtype, t->shape, t->bytes});
  const auto& bias = checkpoint.require("model.layers.0.self_attn.q_proj.bias");
  tensors.push_back({"model.layers.0.self_attn.o_proj.bias", bias.dtype, bias.shape, bias.bytes});
  write_safetensors(dir / "model.safetensors", tensors);
  try {
    gguf_tensor_plan(load_model_config(dir), Checkpoint::open(dir));
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.o_proj.bias"), std::string::npos)
        << e.what();
  }
}

TEST(GgufModel, PlanRefusesAnUnknownTensorName) {
  const fs::path source = random_model("qwen3");
  const fs::path dir = test::temp_dir("gguf_model_unknown_name");
  fs::copy_file(source / "config.json", dir / "config.json");
  const Checkpoint checkpoint = Checkpoint::open(source);
  const auto& norm = checkpoint.require("model.norm.weight");
  std::vector<TensorToWrite> tensors{
      {"model.vision_tower.weight", norm.dtype, norm.shape, norm.bytes}};
  write_safetensors(dir / "model.safetensors", tensors);
  EXPECT_THROW(gguf_tensor_plan(load_model_config(dir), Checkpoint::open(dir)), InputError);
}

}  // namespace
}  // namespace ptq
