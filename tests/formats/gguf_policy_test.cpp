// llama-quantize's per-tensor types (pipeline/formats/gguf_policy) against the
// llama-quantize binary itself: for every policy, `llama-quantize MODEL OUT
// POLICY 2` on tiny-f16.gguf, on small's F16 GGUF (written by ptq's
// write_float_gguf: 6 layers, tied embeddings, so no output.weight) and on
// synthetic F16 models of other shapes, and every tensor's type, the tensor
// data size and general.file_type compared with the table's. The synthetic
// models carry tiny's metadata with the llama.* keys of their shape and random
// F16 weights (llama-quantize reads only the hyperparameters and the tensors):
//   odd:         rows that fit no 256-block (320 hidden, 864 MLP), 16 layers
//                (the n/8 and n/16 layer rules), 10/2 heads (GQA 5)
//   llama70b:    80 layers with GQA: llama.cpp's LLM_TYPE_70B attn_v rule
//   odd-rows-32: an MLP of 840 (not a multiple of 32): F16 fallback, or refusal
//   experts8:    Mixtral's shape, 8 experts per layer stacked in ffn_*_exps with
//                a router (ffn_gate_inp): the 8-expert rules
#include "pipeline/formats/gguf_policy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t kF32 = 0, kF16 = 1;  // ggml types
constexpr std::uint32_t kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kIQ4_NL = 20;

fs::path tiny_f16() { return test::fixture("gguf/tiny-f16.gguf"); }

// A fresh folder per process (several test runs may share /tmp), removed with
// its models (the 80-layer one is 63 MB) when the test ends.
struct WorkDir {
  fs::path path;
  explicit WorkDir(const std::string& name)
      : path(test::temp_dir(name + "-" + std::to_string(getpid()))) {}
  ~WorkDir() { fs::remove_all(path); }
};

// ---- llama-quantize ----

struct QuantizeRun {
  bool ok = false;
  std::string log;
};

// llama-quantize [--imatrix IM] MODEL OUT POLICY 2 (2 threads: these machines have 2 cores).
QuantizeRun run_llama_quantize(const fs::path& model, const fs::path& out, std::string_view policy,
                               const fs::path& imatrix = {}) {
  const fs::path tool = test::shared_dir() / "tools/llama.cpp/llama-quantize";
  const fs::path log = out.string() + ".log";
  std::string cmd = tool.string();
  if (!imatrix.empty()) cmd += " --imatrix " + imatrix.string();
  cmd += " " + model.string() + " " + out.string() + " " + std::string(policy) + " 2 > " +
         log.string() + " 2>&1";
  const bool ok = std::system(cmd.c_str()) == 0;
  return {ok, cmd + "\n" + test::read_bytes(log)};
}

// Every tensor of llama-quantize's output has the table's type (or, for a tensor
// copied unchanged, the source's), and the tensor data adds up to the table's size.
void expect_table_types(const fs::path& model, const GgufPolicy& policy,
                        const GgufQuantizeFlags& flags, const fs::path& out) {
  SCOPED_TRACE(model.filename().string() + " " + std::string(policy.name) +
               (flags.imatrix ? " --imatrix" : ""));
  const auto source = gguf::File::open(model);
  const auto quantized = gguf::File::open(out);
  const GgufModelShape shape = gguf_model_shape(*source);
  ASSERT_EQ(quantized->tensors().size(), source->tensors().size());
  std::uint64_t expected_bytes = 0, actual_bytes = 0;
  for (const gguf::TensorInfo& t : quantized->tensors()) {
    const gguf::TensorInfo& src = source->require_tensor(t.name);
    const std::uint32_t type =
        gguf_tensor_type(policy, t.name, src.ne, shape, flags).value_or(src.type);
    EXPECT_EQ(t.type, type) << t.name << ": llama-quantize " << gguf::find_tensor_type(t.type)->name
                            << ", table " << gguf::find_tensor_type(type)->name;
    expected_bytes += gguf::tensor_bytes(*gguf::find_tensor_type(type), src.ne);
    actual_bytes += t.data.size();
  }
  EXPECT_EQ(actual_bytes, expected_bytes);
  EXPECT_EQ(quantized->require("general.file_type").as_int("general.file_type"), policy.file_type);
}

void expect_every_policy(const fs::path& model, const fs::path& dir) {
  for (const GgufPolicy& policy : gguf_policies()) {
    const fs::path out = dir / (std::string(policy.name) + ".gguf");
    const QuantizeRun run = run_llama_quantize(model, out, policy.name);
    ASSERT_TRUE(run.ok) << run.log;
    expect_table_types(model, policy, {}, out);
    fs::remove(out);
  }
}

// ---- synthetic F16 models ----

struct Synthetic {
  std::string name;
  int hidden, ffn, layers, heads, kv_heads, vocab;  // untied embeddings
  bool phi3 = false;  // llama.cpp's phi3: attn_qkv, and ffn_up holding gate and up
  int experts = 0;    // llama.cpp's llama with experts (Mixtral): stacked ffn_*_exps
};

// gtest prints the parameter in test names: the model's name, not its bytes.
void PrintTo(const Synthetic& m, std::ostream* os) { *os << m.name; }

const Synthetic kOdd{"odd", 320, 864, 16, 10, 2, 1000};
const Synthetic kLlama70b{"llama70b", 256, 256, 80, 4, 2, 256};
const Synthetic kOddRows32{"odd-rows-32", 256, 840, 2, 4, 2, 256};
const Synthetic kPhi3{"phi3", 256, 512, 16, 4, 2, 256, true};
const Synthetic kExperts8{"experts8", 256, 256, 8, 4, 2, 256, false, 8};

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

void set_u32(Metadata& metadata, const std::string& key, int value) {
  for (auto& [k, v] : metadata) {
    if (k == key) v = gguf::make_u32(static_cast<std::uint32_t>(value));
  }
}

// tiny-f16.gguf's metadata with the llama.* keys of `m`.
Metadata synthetic_metadata(const Synthetic& m) {
  const auto tiny = gguf::File::open(tiny_f16());
  Metadata metadata = tiny->metadata();
  const int head_dim = m.hidden / m.heads;
  set_u32(metadata, "llama.block_count", m.layers);
  set_u32(metadata, "llama.embedding_length", m.hidden);
  set_u32(metadata, "llama.feed_forward_length", m.ffn);
  set_u32(metadata, "llama.attention.head_count", m.heads);
  set_u32(metadata, "llama.attention.head_count_kv", m.kv_heads);
  set_u32(metadata, "llama.attention.key_length", head_dim);
  set_u32(metadata, "llama.attention.value_length", head_dim);
  set_u32(metadata, "llama.rope.dimension_count", head_dim);
  set_u32(metadata, "llama.vocab_size", m.vocab);
  if (m.experts > 0) {
    metadata.emplace_back("llama.expert_count",
                          gguf::make_u32(static_cast<std::uint32_t>(m.experts)));
    metadata.emplace_back("llama.expert_used_count", gguf::make_u32(2));
  }
  if (!m.phi3) return metadata;
  for (auto& [key, value] : metadata) {
    if (key.starts_with("llama.")) key = "phi3." + key.substr(6);
    if (key == "general.architecture") value = gguf::make_string("phi3");
  }
  metadata.emplace_back("phi3.attention.sliding_window", gguf::make_u32(0));
  return metadata;
}

// Tensors as convert_hf_to_gguf.py names and shapes them (ne: [in, out]):
// 2-D weights in F16 (random), norms in F32 (ones).
class SyntheticTensors {
 public:
  void add(const std::string& name, std::vector<std::int64_t> ne) {
    std::size_t n = 1;
    for (std::int64_t d : ne) n *= static_cast<std::size_t>(d);
    Owned& t = tensors_.emplace_back(Owned{name, std::move(ne), kF16, {}});
    if (t.ne.size() == 1) {
      t.type = kF32;
      const std::vector<float> ones(n, 1.0f);
      const auto bytes = std::as_bytes(std::span(ones));
      t.bytes.assign(bytes.begin(), bytes.end());
      return;
    }
    std::vector<std::uint16_t> half(n);
    for (auto& h : half) h = float_to_half(normal_(rng_));
    const auto bytes = std::as_bytes(std::span(half));
    t.bytes.assign(bytes.begin(), bytes.end());
  }
  std::vector<gguf::TensorToWrite> views() const {
    std::vector<gguf::TensorToWrite> out;
    for (const Owned& t : tensors_) out.push_back({t.name, t.ne, t.type, t.bytes});
    return out;
  }

 private:
  struct Owned {
    std::string name;
    std::vector<std::int64_t> ne;
    std::uint32_t type;
    std::vector<std::byte> bytes;
  };
  std::vector<Owned> tensors_;
  std::mt19937 rng_{7};
  std::normal_distribution<float> normal_{0.0f, 0.02f};
};

fs::path write_synthetic(const Synthetic& m, const fs::path& dir) {
  const std::int64_t head_dim = m.hidden / m.heads, kv = head_dim * m.kv_heads;
  SyntheticTensors t;
  t.add("token_embd.weight", {m.hidden, m.vocab});
  t.add("output.weight", {m.hidden, m.vocab});
  t.add("output_norm.weight", {m.hidden});
  for (int i = 0; i < m.layers; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    t.add(blk + "attn_norm.weight", {m.hidden});
    if (m.phi3) {
      t.add(blk + "attn_qkv.weight", {m.hidden, m.hidden + 2 * kv});
    } else {
      t.add(blk + "attn_q.weight", {m.hidden, m.hidden});
      t.add(blk + "attn_k.weight", {m.hidden, kv});
      t.add(blk + "attn_v.weight", {m.hidden, kv});
    }
    t.add(blk + "attn_output.weight", {m.hidden, m.hidden});
    t.add(blk + "ffn_norm.weight", {m.hidden});
    if (m.experts > 0) {
      t.add(blk + "ffn_gate_inp.weight", {m.hidden, m.experts});
      t.add(blk + "ffn_gate_exps.weight", {m.hidden, m.ffn, m.experts});
      t.add(blk + "ffn_up_exps.weight", {m.hidden, m.ffn, m.experts});
      t.add(blk + "ffn_down_exps.weight", {m.ffn, m.hidden, m.experts});
      continue;
    }
    if (!m.phi3) t.add(blk + "ffn_gate.weight", {m.hidden, m.ffn});
    t.add(blk + "ffn_up.weight", {m.hidden, m.phi3 ? 2 * m.ffn : m.ffn});
    t.add(blk + "ffn_down.weight", {m.ffn, m.hidden});
  }
  const fs::path path = dir / (m.name + "-f16.gguf");
  gguf::write(path, synthetic_metadata(m), t.views());
  return path;
}

// An imatrix of ones for the ffn_down tensors of `m` (the tensors whose rules
// depend on --imatrix); llama-quantize quantizes the others without importance.
fs::path write_ffn_down_imatrix(const Synthetic& m, const fs::path& dir) {
  Imatrix imatrix;
  for (int i = 0; i < m.layers; ++i) {
    imatrix.entries[gguf_weight_name(GgufTensorRole::ffn_down, i)] = {
        std::vector<float>(static_cast<std::size_t>(m.ffn), 1.0f), {1.0f}};
  }
  imatrix.datasets = {"ones"};
  imatrix.chunk_count = 1;
  imatrix.chunk_size = 1;
  const fs::path path = dir / (m.name + "-imatrix.gguf");
  write_imatrix(path, imatrix);
  return path;
}

// ---- the table alone ----

TEST(GgufPolicy, NamesAndFileTypesAreUniqueAndAliasesResolve) {
  std::set<std::string_view> names;
  std::set<std::uint32_t> file_types;
  for (const GgufPolicy& p : gguf_policies()) {
    EXPECT_TRUE(names.insert(p.name).second) << p.name;
    EXPECT_TRUE(file_types.insert(p.file_type).second) << p.name;
    EXPECT_NE(gguf::find_tensor_type(p.base_type), nullptr) << p.name;
    EXPECT_EQ(find_policy(p.name), &p);
  }
  EXPECT_EQ(find_policy("q4_k_m"), find_policy("Q4_K_M"));
  EXPECT_EQ(find_policy("Q4_K")->name, "Q4_K_M");
  EXPECT_EQ(find_policy("Q5_K")->name, "Q5_K_M");
  EXPECT_EQ(find_policy("Q3_K")->name, "Q3_K_M");
  EXPECT_EQ(find_policy("Q4_K_M")->file_type, 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  EXPECT_EQ(find_policy("IQ2_XXS"), nullptr);
}

TEST(GgufPolicy, TensorNamesRoundTrip) {
  EXPECT_EQ(gguf_weight_name(GgufTensorRole::attn_v, 3), "blk.3.attn_v.weight");
  EXPECT_EQ(gguf_weight_name(GgufTensorRole::output), "output.weight");
  const GgufTensorName v = parse_gguf_tensor_name("blk.12.attn_v.weight");
  EXPECT_EQ(v.role, GgufTensorRole::attn_v);
  EXPECT_EQ(v.layer, 12);
  EXPECT_EQ(parse_gguf_tensor_name("token_embd.weight").role, GgufTensorRole::token_embd);
  const GgufTensorName norm = parse_gguf_tensor_name("blk.2.attn_norm.weight");
  EXPECT_EQ(norm.role, GgufTensorRole::other);
  EXPECT_EQ(norm.layer, 2);
  EXPECT_EQ(parse_gguf_tensor_name("blk.x.attn_v.weight").role, GgufTensorRole::other);
  EXPECT_EQ(parse_gguf_tensor_name("blk.1.output.weight").role, GgufTensorRole::other);
  EXPECT_EQ(gguf_weight_name(GgufTensorRole::ffn_down, 3, /*experts=*/true),
            "blk.3.ffn_down_exps.weight");
  const GgufTensorName down = parse_gguf_tensor_name("blk.3.ffn_down_exps.weight");
  EXPECT_EQ(down.role, GgufTensorRole::ffn_down);
  EXPECT_EQ(down.layer, 3);
  EXPECT_EQ(parse_gguf_tensor_name("blk.3.ffn_gate_inp.weight").role, GgufTensorRole::other);
}

TEST(GgufPolicy, RowLengthFallbacks) {
  const GgufModelShape shape{.n_layer = 4, .n_head = 4, .n_head_kv = 2};
  const GgufPolicy& q4_k_m = *find_policy("Q4_K_M");
  const std::vector<std::int64_t> mlp_864{864, 256}, mlp_840{840, 256}, rows_320{320, 1000};
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "blk.0.ffn_down.weight", mlp_864, shape), kQ5_0);
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "blk.0.ffn_down.weight", mlp_840, shape), kF16);
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "output.weight", rows_320, shape), kQ8_0);
  EXPECT_EQ(gguf_tensor_type(*find_policy("IQ4_XS"), "blk.0.attn_q.weight", rows_320, shape),
            kIQ4_NL);
  // The 32-block types have no fallback: llama-quantize refuses the tensor.
  EXPECT_THROW(gguf_tensor_type(*find_policy("Q4_0"), "blk.0.ffn_down.weight", mlp_840, shape),
               InputError);
  // Copied unchanged: 1-D, [n, 1], norms.
  const std::vector<std::int64_t> vec{256}, column{256, 1}, square{256, 256};
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "output_norm.weight", vec, shape), std::nullopt);
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "blk.0.attn_q.weight", column, shape), std::nullopt);
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "blk.0.attn_norm.weight", square, shape), std::nullopt);
  EXPECT_EQ(gguf_tensor_type(q4_k_m, "blk.0.attn_q.weight", square, shape), kQ4_K);
  EXPECT_THROW(gguf_tensor_type(q4_k_m, "blk.4.attn_q.weight", square, shape), InputError);
}

// The fixtures' `llama-quantize --pure tiny-f16.gguf OUT TYPE`: every 2-D
// tensor in the base type, output and embeddings included.
TEST(GgufPolicy, PureMatchesTheFixtures) {
  const auto source = gguf::File::open(tiny_f16());
  const GgufModelShape shape = gguf_model_shape(*source);
  for (const std::string type : {"Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"}) {
    const auto pure = gguf::File::open(test::fixture("gguf/tiny-" + type + ".gguf"));
    const GgufPolicy& policy = *find_policy(type);
    EXPECT_EQ(pure->require("general.file_type").as_int("file_type"), policy.file_type) << type;
    for (const gguf::TensorInfo& t : pure->tensors()) {
      const auto expected = gguf_tensor_type(policy, t.name, t.ne, shape, {.pure = true});
      EXPECT_EQ(t.type, expected.value_or(kF32)) << type << " " << t.name;
    }
  }
}

// ---- against llama-quantize ----

TEST(GgufPolicyVsLlamaQuantize, Tiny) {
  const auto source = gguf::File::open(tiny_f16());
  const GgufModelShape shape = gguf_model_shape(*source);
  EXPECT_EQ(shape.n_layer, 4);
  EXPECT_FALSE(shape.tied_embeddings);
  const WorkDir work("gguf-policy-tiny");
  expect_every_policy(tiny_f16(), work.path);
}

// small's MLP (1280 = 5 x 256) fits the k-quant blocks: no fallback; its
// token_embd.weight is typed as the output.
TEST(GgufPolicyVsLlamaQuantize, Small) {
  const WorkDir work("gguf-policy-small");
  const fs::path& dir = work.path;
  const fs::path model = dir / "small-f16.gguf";
  write_float_gguf(test::fixture("models/small"), model, GgufFloatType::f16);
  const GgufModelShape shape = gguf_model_shape(*gguf::File::open(model));
  EXPECT_EQ(shape.n_layer, 6);
  EXPECT_TRUE(shape.tied_embeddings);
  expect_every_policy(model, dir);
}

class SyntheticVsLlamaQuantize : public ::testing::TestWithParam<Synthetic> {};

TEST_P(SyntheticVsLlamaQuantize, EveryPolicy) {
  const WorkDir work("gguf-policy-" + GetParam().name);
  const fs::path& dir = work.path;
  expect_every_policy(write_synthetic(GetParam(), dir), dir);
}

// kPhi3: llama-quantize types Phi-3's fused attn_qkv by the attn_v rules;
// kExperts8: the stacked experts by the ffn rules, the router never quantized.
INSTANTIATE_TEST_SUITE_P(Shapes, SyntheticVsLlamaQuantize,
                         ::testing::Values(kOdd, kLlama70b, kPhi3, kExperts8),
                         [](const auto& info) { return info.param.name; });

// The rules that depend on --imatrix (Q4_0/Q5_0: ffn_down of the first n/8
// layers in Q4_1/Q5_1; IQ4: Q5_K there only without an imatrix), on 16 layers.
TEST(GgufPolicyVsLlamaQuantize, ImatrixRules) {
  const WorkDir work("gguf-policy-imatrix");
  const fs::path& dir = work.path;
  const fs::path model = write_synthetic(kOdd, dir);
  const fs::path imatrix = write_ffn_down_imatrix(kOdd, dir);
  for (const std::string name : {"Q4_0", "Q5_0", "IQ4_NL", "IQ4_XS"}) {
    const fs::path out = dir / (name + ".gguf");
    const QuantizeRun run = run_llama_quantize(model, out, name, imatrix);
    ASSERT_TRUE(run.ok) << run.log;
    expect_table_types(model, *find_policy(name), {.imatrix = true}, out);
  }
}

// Rows of 840: the 256-block types fall back to F16 (840 fits no 32-block
// either); a 32-block type has no fallback and llama-quantize fails, as the
// table's InputError says.
TEST(GgufPolicyVsLlamaQuantize, RowsThatFitNoBlock) {
  const WorkDir work("gguf-policy-odd-rows-32");
  const fs::path& dir = work.path;
  const fs::path model = write_synthetic(kOddRows32, dir);
  const QuantizeRun q4_k_m = run_llama_quantize(model, dir / "Q4_K_M.gguf", "Q4_K_M");
  ASSERT_TRUE(q4_k_m.ok) << q4_k_m.log;
  expect_table_types(model, *find_policy("Q4_K_M"), {}, dir / "Q4_K_M.gguf");
  EXPECT_FALSE(run_llama_quantize(model, dir / "Q4_0.gguf", "Q4_0").ok);
  const auto source = gguf::File::open(model);
  const gguf::TensorInfo& down = source->require_tensor("blk.0.ffn_down.weight");
  EXPECT_THROW(
      gguf_tensor_type(*find_policy("Q4_0"), down.name, down.ne, gguf_model_shape(*source)),
      InputError);
}

}  // namespace
}  // namespace ptq
