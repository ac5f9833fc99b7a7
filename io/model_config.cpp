// config.json -> ModelConfig. Every field is type-checked; what an architecture
// fixes by definition (Qwen2's q/k/v bias, Qwen3's q/k norms) and its defaults
// live in one table.
#include "io/model_config.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "io/error.hpp"
#include "io/json_strict.hpp"

namespace ptq {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();

struct ArchitectureInfo {
  Architecture arch;
  std::string_view model_type;
  int default_max_position_embeddings;  // transformers' default for the family
  bool forced_attention_bias;           // Qwen2: q/k/v always carry a bias
  bool qk_norm;                         // Qwen3: RMSNorm on q and k per head
  bool sliding_window;  // its sliding_window applies (Qwen2/3 gate it by use_sliding_window)
  bool gemma;           // Gemma 2/3: parse_gemma
  bool moe;             // Mixtral, Qwen3-MoE: parse_moe
};

constexpr std::array<ArchitectureInfo, 9> kArchitectures{{
    {Architecture::Llama, "llama", 2048, false, false, false, false, false},
    {Architecture::Mistral, "mistral", 131072, false, false, true, false, false},
    {Architecture::Qwen2, "qwen2", 32768, true, false, false, false, false},
    {Architecture::Qwen3, "qwen3", 32768, false, true, false, false, false},
    {Architecture::Phi3, "phi3", 4096, false, false, true, false, false},
    {Architecture::Gemma2, "gemma2", 8192, false, false, true, true, false},
    {Architecture::Gemma3, "gemma3_text", 131072, false, true, true, true, false},
    {Architecture::Mixtral, "mixtral", 131072, false, false, true, false, true},
    {Architecture::Qwen3Moe, "qwen3_moe", 32768, false, true, false, false, true},
}};

struct RopeTypeInfo {
  RopeType type;
  std::string_view name;
};
constexpr std::array<RopeTypeInfo, 5> kRopeTypes{
    {{RopeType::Default, "default"},
     {RopeType::Linear, "linear"},
     {RopeType::Llama3, "llama3"},
     {RopeType::LongRope, "longrope"},
     {RopeType::LongRope, "su"}}};  // longrope's first name

std::string supported_rope_types() {
  std::string out;
  for (const auto& r : kRopeTypes) out += (out.empty() ? "" : ", ") + std::string(r.name);
  return out;
}

// Reads typed fields of one JSON object; `where_` prefixes error messages.
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string where(const char* key) const { return where_ + ": " + key; }

  int required_int(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) throw input_error(where(key), "a positive integer", "none");
    return to_int(*v, key);
  }
  std::optional<int> optional_int(const char* key) const {
    const json* v = find(key);
    return v ? std::optional<int>(to_int(*v, key)) : std::nullopt;
  }
  std::optional<double> optional_number(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) throw input_error(where(key), "a number", describe_json(*v));
    return v->get<double>();
  }
  double required_number(const char* key) const {
    if (auto v = optional_number(key)) return *v;
    throw input_error(where(key), "a number", "none");
  }
  // A non-empty list of positive numbers.
  std::vector<double> required_factors(const char* key) const {
    const json* v = find(key);
    const bool ok = v && v->is_array() && !v->empty() &&
                    std::all_of(v->begin(), v->end(),
                                [](const json& x) { return x.is_number() && x.get<double>() > 0; });
    if (!ok)
      throw input_error(where(key), "a list of positive numbers", v ? describe_json(*v) : "none");
    return v->get<std::vector<double>>();
  }
  bool optional_bool(const char* key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) throw input_error(where(key), "true or false", describe_json(*v));
    return v->get<bool>();
  }

 private:
  int to_int(const json& v, const char* key) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > kMaxInt) {
      throw input_error(where(key), "a non-negative 32-bit integer", describe_json(v));
    }
    return v.get<int>();
  }

  const json& object_;
  std::string where_;
};

const ArchitectureInfo& find_architecture(const Fields& f) {
  const json* type = f.find("model_type");
  if (type == nullptr || !type->is_string()) {
    throw input_error(f.where("model_type"), "one of " + supported_architectures(),
                      type ? describe_json(*type) : "none");
  }
  for (const auto& a : kArchitectures) {
    if (a.model_type == type->get<std::string>()) return a;
  }
  throw input_error(f.where("model_type"), "one of " + supported_architectures(),
                    describe_json(*type));
}

RopeType parse_rope_type(const Fields& scaling) {
  const json* type = scaling.find("rope_type");
  if (type == nullptr) type = scaling.find("type");  // older spelling
  if (type == nullptr) return RopeType::Default;
  for (const auto& r : kRopeTypes) {
    if (type->is_string() && r.name == type->get<std::string>()) return r.type;
  }
  throw input_error(scaling.where("rope_type"), "one of " + supported_rope_types(),
                    describe_json(*type));
}

// LongRoPE as transformers computes it: the context is stretched by max_position_embeddings
// / original_max_position_embeddings (when the config gives the original length), and
// attention_factor, when absent, is sqrt(1 + ln(factor) / ln(original length)).
void parse_longrope(const Fields& top, const Fields& f, int max_position_embeddings,
                    RopeConfig& rope) {
  rope.short_factor = f.required_factors("short_factor");
  rope.long_factor = f.required_factors("long_factor");
  auto original = f.optional_int("original_max_position_embeddings");
  if (!original) original = top.optional_int("original_max_position_embeddings");
  rope.original_max_position_embeddings = original.value_or(max_position_embeddings);
  if (rope.original_max_position_embeddings <= 0)
    throw input_error(f.where("original_max_position_embeddings"), "a positive integer", "0");
  rope.factor = original ? static_cast<double>(max_position_embeddings) / *original
                         : f.optional_number("factor").value_or(1.0);
  rope.attention_factor =
      f.optional_number("attention_factor")
          .value_or(rope.factor <= 1.0
                        ? 1.0
                        : std::sqrt(1.0 + std::log(rope.factor) /
                                              std::log(static_cast<double>(
                                                  rope.original_max_position_embeddings))));
}

// One rope section: {rope_theta, rope_type, factor, ...}, over `rope`'s theta.
void parse_rope_section(const Fields& top, const Fields& f, int max_position_embeddings,
                        RopeConfig& rope) {
  if (auto theta = f.optional_number("rope_theta")) rope.theta = *theta;
  rope.type = parse_rope_type(f);
  if (auto partial = f.optional_number("partial_rotary_factor"); partial && *partial != 1.0)
    throw input_error(f.where("partial_rotary_factor"), "1 (what ptq's forward implements)",
                      std::to_string(*partial));
  if (rope.type == RopeType::Linear) rope.factor = f.required_number("factor");
  if (rope.type == RopeType::Llama3) {
    rope.factor = f.required_number("factor");
    rope.low_freq_factor = f.required_number("low_freq_factor");
    rope.high_freq_factor = f.required_number("high_freq_factor");
    rope.original_max_position_embeddings = f.required_int("original_max_position_embeddings");
  }
  if (rope.type == RopeType::LongRope) parse_longrope(top, f, max_position_embeddings, rope);
}

// The object under `key`, or null when absent.
const json* object_field(const Fields& f, const char* key) {
  const json* v = f.find(key);
  if (v != nullptr && !v->is_object())
    throw input_error(f.where(key), "an object", describe_json(*v));
  return v;
}

// New style: rope_parameters {rope_theta, rope_type, ...}. Old style: top-level
// rope_theta plus an optional rope_scaling {type|rope_type, factor, ...}.
// `layer_type` (Gemma 3) picks rope_parameters' section of that attention type
// when rope_parameters is split by layer type.
RopeConfig parse_rope(const Fields& top, const std::string& where, int max_position_embeddings,
                      const char* layer_type = "full_attention") {
  RopeConfig rope;
  const char* section_key = top.find("rope_parameters") ? "rope_parameters" : "rope_scaling";
  if (auto theta = top.optional_number("rope_theta")) rope.theta = *theta;
  const json* section = object_field(top, section_key);
  if (section == nullptr) return rope;
  const Fields f(*section, where + ": " + section_key);
  if (const json* per_type = object_field(f, layer_type)) {
    const Fields typed(*per_type, where + ": " + section_key + "." + layer_type);
    parse_rope_section(top, typed, max_position_embeddings, rope);
  } else {
    parse_rope_section(top, f, max_position_embeddings, rope);
  }
  return rope;
}

// eos_token_id: an integer, a list of integers, or absent.
std::vector<int> parse_eos(const Fields& f) {
  const json* eos = f.find("eos_token_id");
  if (eos == nullptr) return {};
  const json list = eos->is_array() ? *eos : json::array({*eos});
  std::vector<int> ids;
  for (const auto& id : list) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > kMaxInt) {
      throw input_error(f.where("eos_token_id"), "a token id or a list of token ids",
                        describe_json(*eos));
    }
    ids.push_back(id.get<int>());
  }
  return ids;
}

// Fields that change the forward's arithmetic and the values ptq implements:
// any other value is refused, never ignored (ignoring one gives wrong logits
// with exit 0).
struct ImplementedValues {
  const char* key;
  std::array<const char*, 2> values;  // as JSON text; nullptr pads
};
constexpr std::array<ImplementedValues, 6> kImplemented{{
    {"hidden_act", {"\"silu\"", "\"swish\""}},
    {"use_sliding_window", {"false", nullptr}},
    {"attn_logit_softcapping", {"null", nullptr}},
    {"final_logit_softcapping", {"null", nullptr}},
    {"partial_rotary_factor", {"1", "1.0"}},
    {"use_qk_norm", {"false", nullptr}},
}};

// Refuses any key of `table` given with a value other than those listed.
template <std::size_t N>
void refuse_other_values(const json& root, const Fields& f,
                         const std::array<ImplementedValues, N>& table) {
  for (const auto& [key, values] : table) {
    const auto it = root.find(key);
    if (it == root.end()) continue;
    const std::string text = it->dump();
    bool ok = false;
    std::string list;
    for (const char* v : values) {
      if (v == nullptr) continue;
      ok |= text == v;
      list += (list.empty() ? "" : " or ") + std::string(v);
    }
    if (!ok)
      throw input_error(f.where(key), list + " (what ptq's forward implements)",
                        describe_json(*it));
  }
}

void refuse_unimplemented(const json& root, const Fields& f) {
  refuse_other_values(root, f, kImplemented);
  // layer_types (transformers >= 4.53): every layer must be full attention.
  if (const json* types = f.find("layer_types")) {
    const bool all_full =
        types->is_array() && std::all_of(types->begin(), types->end(), [](const json& t) {
          return t.is_string() && t.get<std::string>() == "full_attention";
        });
    if (!all_full)
      throw input_error(f.where("layer_types"), "\"full_attention\" for every layer",
                        describe_json(*types));
  }
}

// Gemma's values for what kImplemented fixes for the Llama family.
constexpr std::array<ImplementedValues, 3> kGemmaImplemented{{
    {"hidden_activation", {"\"gelu_pytorch_tanh\"", nullptr}},
    {"hidden_act", {"\"gelu_pytorch_tanh\"", nullptr}},
    {"use_bidirectional_attention", {"false", "null"}},
}};

// A key given as null counts as given (no soft-capping); an absent one takes
// transformers' default for the family.
double optional_cap(const json& root, const Fields& f, const char* key, double fallback) {
  if (!root.contains(key)) return fallback;
  return f.optional_number(key).value_or(0.0);
}

// Which layers of a Gemma model use sliding-window attention: layer_types
// when given, else transformers' pattern (Gemma 2: every other layer from the
// first; Gemma 3: all but every sliding_window_pattern-th).
std::vector<char> gemma_sliding_layers(const Fields& f, const ModelConfig& c) {
  std::vector<char> sliding(static_cast<std::size_t>(c.num_layers), 0);
  if (const json* types = f.find("layer_types")) {
    const bool ok = types->is_array() && types->size() == sliding.size() &&
                    std::all_of(types->begin(), types->end(), [](const json& t) {
                      return t == "sliding_attention" || t == "full_attention";
                    });
    if (!ok)
      throw input_error(f.where("layer_types"),
                        std::to_string(c.num_layers) +
                            " entries, each \"sliding_attention\" or \"full_attention\"",
                        describe_json(*types));
    for (std::size_t i = 0; i < sliding.size(); ++i)
      sliding[i] = (*types)[i] == "sliding_attention";
    return sliding;
  }
  int pattern = 2;
  if (c.arch == Architecture::Gemma3) {
    pattern = f.optional_int("sliding_window_pattern")
                  .value_or(f.optional_int("_sliding_window_pattern").value_or(6));
    if (pattern <= 0)
      throw input_error(f.where("sliding_window_pattern"), "a positive integer", "0");
  }
  for (std::size_t i = 0; i < sliding.size(); ++i) sliding[i] = (i + 1) % pattern != 0;
  return sliding;
}

// Gemma 2/3 (transformers' Gemma2Config / Gemma3TextConfig and their defaults).
void parse_gemma(const json& root, const Fields& f, const std::string& where, ModelConfig& c) {
  refuse_other_values(root, f, kGemmaImplemented);
  const bool gemma2 = c.arch == Architecture::Gemma2;
  c.head_dim = f.optional_int("head_dim").value_or(256);  // not hidden / heads by default
  c.activation = Activation::gelu_tanh;
  c.norm_plus_one = true;
  c.sandwich_norms = true;
  c.embed_scale = std::sqrt(static_cast<double>(c.hidden_size));
  const double scalar = f.optional_number("query_pre_attn_scalar").value_or(256.0);
  if (!(scalar > 0))
    throw input_error(f.where("query_pre_attn_scalar"), "a positive number",
                      std::to_string(scalar));
  c.query_scale = 1.0 / std::sqrt(scalar);
  c.attn_logit_softcap = optional_cap(root, f, "attn_logit_softcapping", gemma2 ? 50.0 : 0.0);
  c.final_logit_softcap = optional_cap(root, f, "final_logit_softcapping", gemma2 ? 30.0 : 0.0);
  if (c.attn_logit_softcap < 0 || c.final_logit_softcap < 0)
    throw input_error(f.where("attn_logit_softcapping"), "positive soft-capping values or null",
                      "a negative one");
  c.sliding_window = f.optional_int("sliding_window").value_or(4096);
  if (c.sliding_window <= 0)
    throw input_error(f.where("sliding_window"), "a positive integer", "0");
  c.sliding_layers = gemma_sliding_layers(f, c);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", true);
  // Gemma 3's sliding layers: rope_parameters.sliding_attention, or (older
  // configs) rope_local_base_freq without scaling.
  c.local_rope = c.rope;
  if (gemma2) return;
  const json* params = f.find("rope_parameters");
  if (params != nullptr && params->contains("sliding_attention")) {
    c.local_rope = parse_rope(f, where, c.max_position_embeddings, "sliding_attention");
  } else {
    c.local_rope = RopeConfig();
    c.local_rope.theta = f.optional_number("rope_local_base_freq").value_or(10000.0);
  }
}

// One of two spellings of a count (transformers v5 renamed some).
std::optional<int> either_int(const Fields& f, const char* key, const char* other) {
  const auto a = f.optional_int(key), b = f.optional_int(other);
  if (a && b && *a != *b)
    throw input_error(f.where(key),
                      std::string("the value of ") + other + " (" + std::to_string(*b) +
                          "), which names the same count",
                      std::to_string(*a));
  return a ? a : b;
}

// Mixtral (every layer a mixture of experts of intermediate_size, top-k
// renormalized) and Qwen3-MoE (moe_intermediate_size, norm_topk_prob, and
// dense layers in mlp_only_layers or off decoder_sparse_step). The router's
// jitter noise and auxiliary loss act in training only.
void parse_moe(const Fields& f, ModelConfig& c) {
  const bool mixtral = c.arch == Architecture::Mixtral;
  MoeConfig& m = c.moe;
  m.experts = either_int(f, "num_local_experts", "num_experts").value_or(mixtral ? 8 : 128);
  m.experts_per_token = f.optional_int("num_experts_per_tok").value_or(mixtral ? 2 : 8);
  m.intermediate_size =
      mixtral ? c.intermediate_size : f.optional_int("moe_intermediate_size").value_or(768);
  m.normalize_top_k = mixtral || f.optional_bool("norm_topk_prob", false);
  if (m.experts <= 0)
    throw input_error(f.where("num_local_experts"), "a positive integer",
                      std::to_string(m.experts));
  m.layers.assign(static_cast<std::size_t>(c.num_layers), 1);
  if (mixtral) return;
  const int step = f.optional_int("decoder_sparse_step").value_or(1);
  if (step <= 0) throw input_error(f.where("decoder_sparse_step"), "a positive integer", "0");
  for (int i = 0; i < c.num_layers; ++i)
    m.layers[static_cast<std::size_t>(i)] = (i + 1) % step == 0;
  if (const json* dense = f.find("mlp_only_layers")) {
    const bool ok =
        dense->is_array() && std::all_of(dense->begin(), dense->end(), [&](const json& v) {
          return v.is_number_integer() && v.get<std::int64_t>() >= 0 &&
                 v.get<std::int64_t>() < c.num_layers;
        });
    if (!ok)
      throw input_error(f.where("mlp_only_layers"),
                        "a list of layer indices below " + std::to_string(c.num_layers),
                        describe_json(*dense));
    for (const json& v : *dense) m.layers[v.get<std::size_t>()] = 0;
  }
}

}  // namespace

std::string_view architecture_name(Architecture a) {
  for (const auto& info : kArchitectures) {
    if (info.arch == a) return info.model_type;
  }
  PTQ_ASSERT(false && "Architecture missing from kArchitectures");
  return {};
}

std::string_view rope_type_name(RopeType type) {
  for (const auto& r : kRopeTypes) {
    if (r.type == type) return r.name;
  }
  PTQ_ASSERT(false && "RopeType missing from kRopeTypes");
  return {};
}

std::string supported_architectures() {
  std::string out;
  for (const auto& a : kArchitectures) out += (out.empty() ? "" : ", ") + std::string(a.model_type);
  return out;
}

ModelConfig load_model_config(const fs::path& path) {
  const fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  if (!fs::is_regular_file(file))
    throw input_error(file.string(), "a config.json file", "no such file");
  const json root = read_json_file(file.string());
  if (!root.is_object()) throw input_error(file.string(), "a JSON object", json_type_name(root));
  const Fields f(root, file.string());

  const ArchitectureInfo& arch = find_architecture(f);
  ModelConfig c;
  c.arch = arch.arch;
  c.model_type = arch.model_type;
  c.hidden_size = f.required_int("hidden_size");
  c.intermediate_size = f.required_int("intermediate_size");
  c.num_layers = f.required_int("num_hidden_layers");
  c.num_heads = f.required_int("num_attention_heads");
  c.num_kv_heads = f.optional_int("num_key_value_heads").value_or(c.num_heads);
  c.vocab_size = f.required_int("vocab_size");
  if (auto head_dim = f.optional_int("head_dim")) {
    c.head_dim = *head_dim;
  } else if (c.num_heads > 0 && c.hidden_size % c.num_heads == 0) {
    c.head_dim = c.hidden_size / c.num_heads;
  } else {
    throw input_error(f.where("hidden_size"),
                      "a multiple of num_attention_heads (" + std::to_string(c.num_heads) +
                          ") when head_dim is absent",
                      std::to_string(c.hidden_size));
  }
  c.max_position_embeddings =
      f.optional_int("max_position_embeddings").value_or(arch.default_max_position_embeddings);
  c.rms_norm_eps = f.optional_number("rms_norm_eps").value_or(c.rms_norm_eps);
  c.rope = parse_rope(f, file.string(), c.max_position_embeddings);
  c.tie_word_embeddings = f.optional_bool("tie_word_embeddings", false);
  c.attention_bias = arch.forced_attention_bias || f.optional_bool("attention_bias", false);
  c.mlp_bias = f.optional_bool("mlp_bias", false);
  c.qk_norm = arch.qk_norm;
  c.bos_token_id = f.optional_int("bos_token_id").value_or(-1);
  c.eos_token_ids = parse_eos(f);
  if (arch.gemma) {
    parse_gemma(root, f, file.string(), c);
  } else {
    refuse_unimplemented(root, f);
    // Qwen2/3 give sliding_window with use_sliding_window false (refused when true).
    if (arch.sliding_window) c.sliding_window = f.optional_int("sliding_window").value_or(0);
    if (arch.moe) parse_moe(f, c);
  }
  c.validate(file);
  return c;
}

void ModelConfig::check_sequence_length(std::int64_t seq_len) const {
  if (sliding_layers.empty() && sliding_window > 0 && seq_len > sliding_window)
    throw input_error(model_type + " config.json: sliding_window",
                      "sequences of at most " + std::to_string(sliding_window) +
                          " tokens (ptq attends to every earlier position, which equals the "
                          "sliding window only within it)",
                      "a sequence of " + std::to_string(seq_len) + " tokens");
}

void ModelConfig::validate(const fs::path& source) const {
  const std::string where = source.string();
  auto positive = [&](const char* key, int value) {
    if (value <= 0)
      throw input_error(where + ": " + key, "a positive integer", std::to_string(value));
  };
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  positive("vocab_size", vocab_size);
  if (num_heads % num_kv_heads != 0) {
    throw input_error(where + ": num_key_value_heads",
                      "a divisor of num_attention_heads (" + std::to_string(num_heads) + ")",
                      std::to_string(num_kv_heads));
  }
  if (head_dim % 2 != 0)
    throw input_error(where + ": head_dim", "an even number (RoPE rotates pairs)",
                      std::to_string(head_dim));
  if (!(rms_norm_eps > 0))
    throw input_error(where + ": rms_norm_eps", "a positive number", std::to_string(rms_norm_eps));
  if (!(rope.theta > 0) || (!sliding_layers.empty() && !(local_rope.theta > 0)))
    throw input_error(where + ": rope_theta", "a positive number",
                      std::to_string(std::min(rope.theta, local_rope.theta)));
  if (rope.type == RopeType::Linear && !(rope.factor > 0))
    throw input_error(where + ": rope linear factor", "a positive number",
                      std::to_string(rope.factor));
  if (has_moe() && (moe.experts_per_token <= 0 || moe.experts_per_token > moe.experts))
    throw input_error(where + ": num_experts_per_tok",
                      "between 1 and the expert count (" + std::to_string(moe.experts) + ")",
                      std::to_string(moe.experts_per_token));
  if (has_moe() && moe.intermediate_size <= 0)
    throw input_error(where + ": moe_intermediate_size", "a positive integer",
                      std::to_string(moe.intermediate_size));
  const auto half = static_cast<std::size_t>(head_dim / 2);
  if (rope.type == RopeType::LongRope &&
      (rope.short_factor.size() != half || rope.long_factor.size() != half)) {
    throw input_error(where + ": rope longrope short_factor / long_factor",
                      std::to_string(half) + " factors each (head_dim / 2)",
                      std::to_string(rope.short_factor.size()) + " and " +
                          std::to_string(rope.long_factor.size()));
  }
  if (rope.type == RopeType::Llama3 && !(rope.factor > 0 && rope.low_freq_factor > 0 &&
                                         rope.high_freq_factor > rope.low_freq_factor &&
                                         rope.original_max_position_embeddings > 0)) {
    throw input_error(
        where + ": rope llama3 parameters",
        "factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0",
        "factor " + std::to_string(rope.factor) + ", low_freq_factor " +
            std::to_string(rope.low_freq_factor) + ", high_freq_factor " +
            std::to_string(rope.high_freq_factor));
  }
}

}  // namespace ptq
