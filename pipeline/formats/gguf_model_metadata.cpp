// The hyperparameter keys of a GGUF model file, in the converter's order
// (TextModel.set_gguf_parameters, LlamaModel.set_gguf_parameters), and their
// inverse, gguf_model_config.
#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "pipeline/formats/gguf_model.hpp"

namespace ptq {
namespace {

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

// gguf-py's GGML_QUANT_VERSION: the block layouts of gguf_blocks.hpp.
constexpr std::uint32_t kQuantizationVersion = 2;

// llama3 rope scaling's parameters: llama.cpp reads only their result
// (rope_freqs.weight), ptq's reader needs them to rebuild the ModelConfig.
struct Llama3Key {
  std::string_view key;
  double RopeConfig::*field;
};
constexpr std::array<Llama3Key, 3> kLlama3Keys{{
    {"ptq.rope.llama3.factor", &RopeConfig::factor},
    {"ptq.rope.llama3.low_freq_factor", &RopeConfig::low_freq_factor},
    {"ptq.rope.llama3.high_freq_factor", &RopeConfig::high_freq_factor},
}};
constexpr std::string_view kLlama3OriginalContext = "ptq.rope.llama3.original_context_length";
constexpr std::string_view kPhi3OriginalContext = "phi3.rope.scaling.original_context_length";
constexpr std::string_view kPhi3AttnFactor = "phi3.rope.scaling.attn_factor";

gguf::Value u32(int v) { return gguf::make_u32(static_cast<std::uint32_t>(v)); }
gguf::Value f32(double v) { return gguf::make_f32(static_cast<float>(v)); }

// The converter writes key_length/value_length only when config.json has head_dim.
bool config_sets_head_dim(const std::filesystem::path& model_dir) {
  const auto config = read_json_file((model_dir / "config.json").string());
  return config.is_object() && config.contains("head_dim") && !config.at("head_dim").is_null();
}

void add_hyperparameters(Metadata& m, const std::filesystem::path& model_dir,
                         const ModelConfig& c) {
  const std::string a(gguf_architecture(c.arch));
  m.emplace_back(a + ".block_count", u32(c.num_layers));
  m.emplace_back(a + ".context_length", u32(c.max_position_embeddings));
  m.emplace_back(a + ".embedding_length", u32(c.hidden_size));
  m.emplace_back(a + ".feed_forward_length", u32(c.intermediate_size));
  m.emplace_back(a + ".attention.head_count", u32(c.num_heads));
  m.emplace_back(a + ".attention.head_count_kv", u32(c.num_kv_heads));
  m.emplace_back(a + ".rope.freq_base", f32(c.rope.theta));
  m.emplace_back(a + ".attention.layer_norm_rms_epsilon", f32(c.rms_norm_eps));
  if (c.has_moe()) {  // Qwen3-MoE's feed_forward_length stays the dense one, as its converter's
    m.emplace_back(a + ".expert_count", u32(c.moe.experts));
    m.emplace_back(a + ".expert_used_count", u32(c.moe.experts_per_token));
    if (c.arch == Architecture::Qwen3Moe)
      m.emplace_back(a + ".expert_feed_forward_length", u32(c.moe.intermediate_size));
  }
  // Gemma's converters write them always (Gemma's head_dim is not hidden / heads).
  if (config_sets_head_dim(model_dir) || is_gemma(c.arch)) {
    m.emplace_back(a + ".attention.key_length", u32(c.head_dim));
    m.emplace_back(a + ".attention.value_length", u32(c.head_dim));
  }
}

std::string folder_name(const std::filesystem::path& dir) {
  auto path = std::filesystem::absolute(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();  // "model/" names "model"
  return path.filename().string();
}

void add_llama3_rope(Metadata& m, const RopeConfig& rope) {
  for (const Llama3Key& k : kLlama3Keys)
    m.emplace_back(std::string(k.key), gguf::make_f32(static_cast<float>(rope.*k.field)));
  m.emplace_back(std::string(kLlama3OriginalContext), u32(rope.original_max_position_embeddings));
}

// Phi3MiniModel's keys: the rope dimensions, the context LongRoPE's short
// factors cover and its attention factor, the sliding window (0: none).
void add_phi3_keys(Metadata& m, const ModelConfig& c) {
  m.emplace_back("phi3.rope.dimension_count", u32(c.head_dim));
  m.emplace_back("phi3.attention.sliding_window", u32(c.sliding_window));
  if (c.rope.type != RopeType::LongRope) return;
  m.emplace_back(std::string(kPhi3OriginalContext), u32(c.rope.original_max_position_embeddings));
  m.emplace_back(std::string(kPhi3AttnFactor),
                 gguf::make_f32(static_cast<float>(c.rope.attention_factor)));
}

// Gemma2Model's and Gemma3Model's keys: Gemma 2's soft-capping, the window
// (which layers slide and the rest llama.cpp fixes: require_gguf_expressible).
void add_gemma_keys(Metadata& m, const ModelConfig& c) {
  const std::string a(gguf_architecture(c.arch));
  if (c.arch == Architecture::Gemma2) {
    m.emplace_back(a + ".attn_logit_softcapping", f32(c.attn_logit_softcap));
    m.emplace_back(a + ".final_logit_softcapping", f32(c.final_logit_softcap));
  }
  m.emplace_back(a + ".attention.sliding_window", u32(c.sliding_window));
}

// Linear RoPE scaling, which llama.cpp reads for every architecture (Gemma 3:
// on its global layers only, as transformers).
void add_linear_rope(Metadata& m, const ModelConfig& c) {
  const std::string a(gguf_architecture(c.arch));
  m.emplace_back(a + ".rope.scaling.type", gguf::make_string("linear"));
  m.emplace_back(a + ".rope.scaling.factor", f32(c.rope.factor));
}

// llama.cpp's vocabulary loader gives Phi-3's special tokens their attributes
// by the model's name: a general.name containing "phi3" or "phi-3" (any case)
// makes it look up these tokens, and refuse the file when one is missing.
void require_phi3_named_tokens(const std::string& name, const Metadata& m,
                               const std::filesystem::path& model_dir) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (lower.find("phi3") == std::string::npos && lower.find("phi-3") == std::string::npos) return;
  const auto tokens = std::find_if(
      m.begin(), m.end(), [](const auto& kv) { return kv.first == "tokenizer.ggml.tokens"; });
  PTQ_ASSERT(tokens != m.end());
  const auto& items = tokens->second.as_array("tokenizer.ggml.tokens").items;
  for (const char* token : {"</s>", "<unk>", "<s>", "<|endoftext|>"}) {
    const bool found = std::any_of(items.begin(), items.end(), [&](const gguf::Value& v) {
      return v.as_string("tokenizer.ggml.tokens") == token;
    });
    if (!found)
      throw input_error(model_dir.string() + ": general.name \"" + name + "\"",
                        std::string("the token ") + token +
                            " in the vocabulary (llama.cpp looks up </s>, <unk>, <s> and "
                            "<|endoftext|> in models whose name says Phi-3, and refuses the "
                            "file without them), or a model folder whose name (general.name) "
                            "does not say phi3",
                        "a vocabulary without it");
  }
}

// general.size_label as the converter writes it: the parameter count in K, M,
// B or T with at least two significant digits ("4.2M", "13M", "8.0B").
std::string size_label(std::int64_t parameters) {
  constexpr std::pair<double, char> kScales[] = {{1e12, 'T'}, {1e9, 'B'}, {1e6, 'M'}};
  double scaled = static_cast<double>(parameters) * 1e-3;
  char suffix = 'K';
  for (const auto& [scale, letter] : kScales) {
    if (static_cast<double>(parameters) > scale) {
      scaled = static_cast<double>(parameters) / scale;
      suffix = letter;
      break;
    }
  }
  const int digits =
      scaled < 0.5 ? 0 : static_cast<int>(std::to_string(std::llround(scaled)).size());
  char text[32];
  std::snprintf(text, sizeof text, "%.*f%c", std::max(2 - digits, 0), scaled, suffix);
  return text;
}

std::int64_t parameter_count(const std::filesystem::path& model_dir) {
  std::int64_t count = 0;
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  for (const TensorView* t : checkpoint.tensors()) {
    std::int64_t n = 1;
    for (std::int64_t d : t->shape) n *= d;
    count += n;
  }
  return count;
}

}  // namespace

Metadata gguf_metadata(const std::filesystem::path& model_dir, const ModelConfig& config,
                       const GgufMetadataOptions& options) {
  require_gguf_expressible(config, model_dir.string());
  const std::string arch(gguf_architecture(config.arch));
  Metadata m;
  m.emplace_back("general.architecture", gguf::make_string(arch));
  m.emplace_back("general.type", gguf::make_string("model"));
  const std::string name = options.name.empty() ? folder_name(model_dir) : options.name;
  m.emplace_back("general.name", gguf::make_string(name));
  m.emplace_back("general.size_label", gguf::make_string(size_label(parameter_count(model_dir))));
  add_hyperparameters(m, model_dir, config);
  m.emplace_back("general.file_type", gguf::make_u32(options.file_type));
  if (arch == "llama") {  // LlamaModel's own keys
    m.emplace_back(arch + ".vocab_size", u32(config.vocab_size));
    m.emplace_back(arch + ".rope.dimension_count", u32(config.head_dim));
  }
  if (arch == "phi3") add_phi3_keys(m, config);
  if (is_gemma(config.arch)) add_gemma_keys(m, config);
  if (config.rope.type == RopeType::Linear) add_linear_rope(m, config);
  if (config.rope.type == RopeType::Llama3) add_llama3_rope(m, config.rope);
  m.emplace_back("general.quantization_version", gguf::make_u32(kQuantizationVersion));
  for (auto& kv : gguf_tokenizer_metadata(model_dir, config)) m.push_back(std::move(kv));
  require_phi3_named_tokens(name, m, model_dir);
  return m;
}

// ---- the inverse ----

namespace {

struct GgufArchitectureRow {
  std::string_view gguf;
  Architecture arch;
};
// "llama" files come from Llama and Mistral alike; both run as Llama, or as
// Mixtral with experts (read_moe).
constexpr std::array<GgufArchitectureRow, 7> kGgufArchitectures{{
    {"llama", Architecture::Llama},
    {"qwen2", Architecture::Qwen2},
    {"qwen3", Architecture::Qwen3},
    {"phi3", Architecture::Phi3},
    {"gemma2", Architecture::Gemma2},
    {"gemma3", Architecture::Gemma3},
    {"qwen3moe", Architecture::Qwen3Moe},
}};

// config.json holds decimal literals; the file holds their nearest f32. The
// shortest decimal that rounds to that f32 is the literal (for literals of up
// to 6 significant digits), so 1e-5 reads back as 1e-5, not 9.99999974e-6.
double decimal_of_f32(double stored) {
  char text[32];
  const auto printed = std::to_chars(text, text + sizeof text, static_cast<float>(stored));
  double value = stored;
  std::from_chars(text, printed.ptr, value);
  return value;
}

class Keys {
 public:
  Keys(const gguf::File& file, std::string arch) : file_(file), arch_(std::move(arch)) {}
  std::string key(std::string_view name) const { return arch_ + "." + std::string(name); }
  int count(std::string_view name) const {
    const std::string k = key(name);
    const auto v = file_.require(k).as_int(k);
    if (v < 0 || v > INT32_MAX)
      throw input_error(file_.path().string() + ": " + k, "a count in [0, 2^31)",
                        std::to_string(v));
    return static_cast<int>(v);
  }
  std::optional<int> optional_count(std::string_view name) const {
    if (file_.find(key(name)) == nullptr) return std::nullopt;
    return count(name);
  }
  double decimal(std::string_view k) const { return decimal_of_f32(file_.require(k).as_float(k)); }

 private:
  const gguf::File& file_;
  std::string arch_;
};

Architecture read_architecture(const gguf::File& file) {
  const auto& name = file.require("general.architecture").as_string("general.architecture");
  for (const auto& row : kGgufArchitectures) {
    if (row.gguf == name) return row.arch;
  }
  throw input_error(file.path().string() + ": general.architecture",
                    "llama, qwen2, qwen3, phi3, gemma2, gemma3 or qwen3moe", "'" + name + "'");
}

// LongRoPE's factor list from its tensor (float32), each back to its decimal.
std::vector<double> rope_factor_list(const gguf::File& file, const gguf::TensorInfo& t) {
  const MatrixRM values = read_gguf_tensor(file, {"", t.name, t.ne, 0, GgufStorage::f32});
  std::vector<double> out;
  for (Eigen::Index i = 0; i < values.size(); ++i) out.push_back(decimal_of_f32(values.data()[i]));
  return out;
}

// Phi-3's LongRoPE: both factor tensors and the keys (what the converter writes).
void read_longrope(const gguf::File& file, const Keys& keys, int context, RopeConfig& rope) {
  if (file.find_tensor("rope_factors_long.weight") == nullptr &&
      file.find_tensor("rope_factors_short.weight") == nullptr)
    return;
  rope.type = RopeType::LongRope;
  rope.long_factor = rope_factor_list(file, file.require_tensor("rope_factors_long.weight"));
  rope.short_factor = rope_factor_list(file, file.require_tensor("rope_factors_short.weight"));
  const std::string original(kPhi3OriginalContext);
  rope.original_max_position_embeddings = static_cast<int>(file.require(original).as_int(original));
  if (rope.original_max_position_embeddings <= 0)
    throw input_error(file.path().string() + ": " + original, "a positive context", "0");
  rope.factor = static_cast<double>(context) / rope.original_max_position_embeddings;
  rope.attention_factor = keys.decimal(kPhi3AttnFactor);
}

// Linear scaling (rope.scaling.type "linear"); "none" or no key: none.
void read_rope_scaling(const gguf::File& file, const Keys& keys, RopeConfig& rope) {
  const std::string type_key = keys.key("rope.scaling.type");
  const auto* type = file.find(type_key);
  if (type == nullptr || type->as_string(type_key) == "none") return;
  if (type->as_string(type_key) != "linear")
    throw input_error(file.path().string() + ": " + type_key,
                      "\"linear\" or \"none\" (the RoPE scalings ptq reads from GGUF)",
                      "\"" + type->as_string(type_key) + "\"");
  rope.type = RopeType::Linear;
  rope.factor = keys.decimal(keys.key("rope.scaling.factor"));
  if (!(rope.factor > 0))
    throw input_error(file.path().string() + ": " + keys.key("rope.scaling.factor"),
                      "a positive factor", std::to_string(rope.factor));
}

RopeConfig read_rope(const gguf::File& file, const Keys& keys, int context_length) {
  RopeConfig rope;
  if (const auto* theta = file.find(keys.key("rope.freq_base")))
    rope.theta = decimal_of_f32(theta->as_float(keys.key("rope.freq_base")));
  read_rope_scaling(file, keys, rope);
  read_longrope(file, keys, context_length, rope);
  if (file.find_tensor("rope_freqs.weight") == nullptr) return rope;
  if (file.find(kLlama3OriginalContext) == nullptr) {
    throw input_error(file.path().string() + ": rope_freqs.weight",
                      "ptq.rope.llama3.* keys with the llama3 rope parameters (files ptq wrote)",
                      "only the frequency factors, which do not determine them");
  }
  rope.type = RopeType::Llama3;
  for (const Llama3Key& k : kLlama3Keys) rope.*k.field = keys.decimal(k.key);
  const std::string context(kLlama3OriginalContext);
  rope.original_max_position_embeddings = static_cast<int>(file.require(context).as_int(context));
  return rope;
}

int read_vocab_size(const gguf::File& file, const Keys& keys) {
  if (auto n = keys.optional_count("vocab_size")) return *n;
  const auto& embd = file.require_tensor("token_embd.weight");
  return static_cast<int>(embd.ne.size() > 1 ? embd.ne[1] : 0);
}

// Gemma 2/3 as llama.cpp's graphs run them: GeGLU, norms on each sublayer's
// output, the embedding scaled by sqrt(hidden), the scale and sliding layers
// llama.cpp fixes, Gemma 2's soft-capping (llama.cpp's defaults when absent)
// and Gemma 3's local RoPE of base 10000. The norms are used as stored (the
// converter's 1 + w), so norm_plus_one stays off.
void read_gemma(const gguf::File& file, const Keys& keys, ModelConfig& c) {
  const bool gemma2 = c.arch == Architecture::Gemma2;
  c.activation = Activation::gelu_tanh;
  c.sandwich_norms = true;
  c.embed_scale = std::sqrt(static_cast<double>(c.hidden_size));
  c.query_scale = llamacpp_gemma_query_scale(c);
  const auto cap = [&](const char* name, double fallback) {
    const std::string k = keys.key(name);
    return file.find(k) != nullptr ? keys.decimal(k) : fallback;
  };
  c.attn_logit_softcap = gemma2 ? cap("attn_logit_softcapping", 50.0) : 0.0;
  c.final_logit_softcap = gemma2 ? cap("final_logit_softcapping", 30.0) : 0.0;
  c.sliding_window = gemma2 ? keys.optional_count("attention.sliding_window").value_or(4096)
                            : keys.count("attention.sliding_window");
  for (int layer = 0; layer < c.num_layers; ++layer)
    c.sliding_layers.push_back(llamacpp_gemma_sliding(c.arch, layer) ? 1 : 0);
  c.local_rope = gemma2 ? c.rope : RopeConfig{};
}

// The experts of a llama (Mixtral) or qwen3moe file, as llama.cpp's graphs
// run them: in every layer, top-k renormalized; each expert's intermediate size
// is expert_feed_forward_length, else (llama.cpp's fallbacks) feed_forward_length
// for llama and that over expert_used_count for qwen3moe.
void read_moe(const Keys& keys, ModelConfig& c) {
  // Required for qwen3moe (InputError naming it), optional for llama.
  const int experts = c.arch == Architecture::Qwen3Moe
                          ? keys.count("expert_count")
                          : keys.optional_count("expert_count").value_or(0);
  if (experts == 0) return;
  if (c.arch == Architecture::Llama) c.arch = Architecture::Mixtral;
  c.model_type = std::string(architecture_name(c.arch));
  MoeConfig& m = c.moe;
  m.experts = experts;
  m.experts_per_token = keys.count("expert_used_count");
  const int fallback = c.arch == Architecture::Mixtral || m.experts_per_token == 0
                           ? c.intermediate_size
                           : c.intermediate_size / m.experts_per_token;
  m.intermediate_size = keys.optional_count("expert_feed_forward_length").value_or(fallback);
  m.normalize_top_k = true;
  m.layers.assign(static_cast<std::size_t>(c.num_layers), 1);
}

std::optional<int> token_id(const gguf::File& file, const char* key) {
  const auto* v = file.find(key);
  return v ? std::optional<int>(static_cast<int>(v->as_int(key))) : std::nullopt;
}

}  // namespace

ModelConfig gguf_model_config(const gguf::File& file) {
  ModelConfig c;
  c.arch = read_architecture(file);
  c.model_type = std::string(architecture_name(c.arch));
  const Keys keys(file, std::string(gguf_architecture(c.arch)));
  c.num_layers = keys.count("block_count");
  c.max_position_embeddings = keys.count("context_length");
  c.hidden_size = keys.count("embedding_length");
  c.intermediate_size = keys.count("feed_forward_length");
  c.num_heads = keys.count("attention.head_count");
  c.num_kv_heads = keys.optional_count("attention.head_count_kv").value_or(c.num_heads);
  c.head_dim = keys.optional_count("attention.key_length")
                   .value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.vocab_size = read_vocab_size(file, keys);
  c.rms_norm_eps = keys.decimal(keys.key("attention.layer_norm_rms_epsilon"));
  c.rope = read_rope(file, keys, c.max_position_embeddings);
  c.sliding_window = keys.optional_count("attention.sliding_window").value_or(0);
  c.tie_word_embeddings = file.find_tensor("output.weight") == nullptr;
  c.attention_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.mlp_bias = file.find_tensor("blk.0.ffn_up.bias") != nullptr;
  c.qk_norm = file.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (is_gemma(c.arch)) read_gemma(file, keys, c);
  read_moe(keys, c);
  if (auto eos = token_id(file, "tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.bos_token_id = token_id(file, "tokenizer.ggml.bos_token_id").value_or(-1);
  c.validate(file.path());
  return c;
}

}  // namespace ptq
