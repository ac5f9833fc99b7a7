#include "pipeline/formats/gguf_policy.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "io/error.hpp"
#include "io/gguf.hpp"

namespace ptq {
namespace {

// ggml.h enum ggml_type, the ids GGUF stores.
constexpr std::uint32_t F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
                        Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, IQ4_NL = 20,
                        IQ4_XS = 23, BF16 = 30;

using R = GgufTensorRole;
using L = GgufLayers;
using C = GgufCondition;

// output.weight (token_embd.weight when tied): Q8_0 when its rows do not fit
// the base type's blocks, else Q6_K. Every quantized policy but Q8_0 has both.
constexpr GgufTypeRule kOutputMisfit{R::output, L::all, C::rows_misfit_base, Q8_0};
constexpr GgufTypeRule kOutputQ6K{R::output, L::all, C::always, Q6_K};

// Models of 8 experts (Mixtral 8x7B): attn_v and attn_k Q8_0 under every
// quantized type, attn_output Q5_K under most of the 2-4-bit ones.
constexpr GgufTypeRule kExpertsV{R::attn_v, L::all, C::experts_8, Q8_0};
constexpr GgufTypeRule kExpertsK{R::attn_k, L::all, C::experts_8, Q8_0};
constexpr GgufTypeRule kExpertsOutput{R::attn_output, L::all, C::experts_8, Q5_K};

constexpr GgufTypeRule kOutputOnly[] = {kOutputMisfit, kOutputQ6K, kExpertsV, kExpertsK};
constexpr GgufTypeRule kQ5KM[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  {R::attn_v, L::more_bits, C::always, Q6_K},
                                  {R::ffn_down, L::more_bits, C::always, Q6_K}};
constexpr GgufTypeRule kQ4KM[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  kExpertsOutput,
                                  {R::attn_v, L::more_bits, C::always, Q6_K},
                                  {R::attn_v, L::all, C::llama_70b, Q5_K},
                                  {R::ffn_down, L::more_bits, C::always, Q6_K}};
constexpr GgufTypeRule kQ4KS[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  kExpertsOutput,
                                  {R::attn_v, L::first_4, C::always, Q5_K},
                                  {R::attn_v, L::all, C::llama_70b, Q5_K},
                                  {R::ffn_down, L::first_eighth, C::always, Q5_K}};
// With an imatrix only, so that Q4_0/Q5_0 without one stay what they always were.
constexpr GgufTypeRule kQ4_0[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  {R::ffn_down, L::first_eighth, C::imatrix, Q4_1}};
constexpr GgufTypeRule kQ5_0[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  {R::ffn_down, L::first_eighth, C::imatrix, Q5_1}};
constexpr GgufTypeRule kIQ4[] = {kOutputMisfit,
                                 kOutputQ6K,
                                 kExpertsV,
                                 kExpertsK,
                                 kExpertsOutput,
                                 {R::attn_v, L::all, C::gqa_4, Q5_K},
                                 {R::ffn_down, L::first_eighth, C::no_imatrix, Q5_K}};
constexpr GgufTypeRule kQ3KS[] = {kOutputMisfit,  kOutputQ6K,
                                  kExpertsV,      kExpertsK,
                                  kExpertsOutput, {R::attn_v, L::all, C::llama_70b, Q5_K}};
constexpr GgufTypeRule kQ3KM[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  kExpertsOutput,
                                  {R::attn_v, L::first_2, C::always, Q5_K},
                                  {R::attn_v, L::all, C::llama_70b, Q5_K},
                                  {R::attn_v, L::all, C::always, Q4_K},
                                  {R::ffn_down, L::first_sixteenth, C::always, Q5_K},
                                  {R::ffn_down, L::all, C::always, Q4_K},
                                  {R::attn_output, L::all, C::always, Q4_K}};
constexpr GgufTypeRule kQ3KL[] = {kOutputMisfit,
                                  kOutputQ6K,
                                  kExpertsV,
                                  kExpertsK,
                                  {R::attn_output, L::all, C::experts_8, Q3_K},  // stays the base
                                  {R::attn_v, L::all, C::always, Q5_K},
                                  {R::ffn_down, L::all, C::always, Q5_K},
                                  {R::attn_output, L::all, C::always, Q5_K}};
constexpr GgufTypeRule kQ2K[] = {kOutputMisfit,
                                 kOutputQ6K,
                                 kExpertsV,
                                 kExpertsK,
                                 kExpertsOutput,
                                 {R::attn_v, L::all, C::llama_70b, Q5_K},
                                 {R::attn_v, L::all, C::gqa_4, Q4_K},
                                 {R::attn_v, L::all, C::always, Q3_K},
                                 {R::ffn_down, L::all, C::always, Q3_K},
                                 {R::attn_output, L::all, C::always, Q3_K}};

// file_type: llama.h enum llama_ftype.
constexpr GgufPolicy kPolicies[] = {
    {"F32", 0, F32, {}},
    {"F16", 1, F16, {}},
    {"BF16", 32, BF16, {}},
    {"Q8_0", 7, Q8_0, {}},  // attn_v and attn_k of 8-expert models are Q8_0 too
    {"Q6_K", 18, Q6_K, kOutputOnly},
    {"Q5_K_M", 17, Q5_K, kQ5KM},
    {"Q5_K_S", 16, Q5_K, kOutputOnly},
    {"Q5_1", 9, Q5_1, kOutputOnly},
    {"Q5_0", 8, Q5_0, kQ5_0},
    {"Q4_K_M", 15, Q4_K, kQ4KM},
    {"Q4_K_S", 14, Q4_K, kQ4KS},
    {"Q4_1", 3, Q4_1, kOutputOnly},
    {"Q4_0", 2, Q4_0, kQ4_0},
    {"IQ4_NL", 25, IQ4_NL, kIQ4},
    {"IQ4_XS", 30, IQ4_XS, kIQ4},
    {"Q3_K_L", 13, Q3_K, kQ3KL},
    {"Q3_K_M", 12, Q3_K, kQ3KM},
    {"Q3_K_S", 11, Q3_K, kQ3KS},
    {"Q2_K", 10, Q2_K, kQ2K},
};

struct Alias {
  std::string_view alias, name;
};
constexpr Alias kAliases[] = {{"Q5_K", "Q5_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q3_K", "Q3_K_M"}};

// tensor_type_fallback: a type of 32-weight blocks for each 256-block type.
// A 32-block type has none (llama-quantize refuses the tensor).
struct Fallback {
  std::uint32_t from, to;
};
constexpr Fallback kFallbacks[] = {{Q2_K, Q4_0}, {Q3_K, Q4_0}, {Q4_K, Q5_0},
                                   {Q5_K, Q5_1}, {Q6_K, Q8_0}, {IQ4_XS, IQ4_NL}};

struct RoleName {
  GgufTensorRole role;
  std::string_view stem;
  bool in_block;
  bool experts = false;  // a mixture layer's stacked experts, which llama-quantize types as ffn_*
};
constexpr RoleName kRoleNames[] = {{R::token_embd, "token_embd", false},
                                   {R::output, "output", false},
                                   {R::attn_q, "attn_q", true},
                                   {R::attn_k, "attn_k", true},
                                   {R::attn_v, "attn_v", true},
                                   {R::attn_qkv, "attn_qkv", true},
                                   {R::attn_output, "attn_output", true},
                                   {R::ffn_gate, "ffn_gate", true},
                                   {R::ffn_up, "ffn_up", true},
                                   {R::ffn_down, "ffn_down", true},
                                   {R::ffn_gate, "ffn_gate_exps", true, true},
                                   {R::ffn_up, "ffn_up_exps", true, true},
                                   {R::ffn_down, "ffn_down_exps", true, true}};

constexpr std::string_view kBlockPrefix = "blk.", kWeightSuffix = ".weight";

int block_size(std::uint32_t type) {
  const gguf::TensorTypeInfo* info = gguf::find_tensor_type(type);
  PTQ_ASSERT(info != nullptr);
  return info->block_size;
}

// What the rules of one tensor are evaluated against.
struct TensorContext {
  int layer, n_layer;
  std::int64_t row_length;
  std::uint32_t base_type;
  const GgufModelShape& shape;
  const GgufQuantizeFlags& flags;
};

bool covers(GgufLayers layers, int i, int n) {
  switch (layers) {
    case L::all:
      return true;
    case L::first_2:
      return i < 2;
    case L::first_4:
      return i < 4;
    case L::first_sixteenth:
      return i < n / 16;
    case L::first_eighth:
      return i < n / 8;
    case L::more_bits:
      return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
  }
  PTQ_ASSERT(false);
}

bool holds(GgufCondition condition, const TensorContext& t) {
  const GgufModelShape& s = t.shape;
  const int gqa = s.n_head_kv > 0 ? s.n_head / s.n_head_kv : 0;  // llama.cpp's n_gqa()
  switch (condition) {
    case C::always:
      return true;
    case C::gqa_4:
      return gqa >= 4;
    case C::llama_70b:
      return s.n_layer == 80 && s.n_head != s.n_head_kv;
    case C::imatrix:
      return t.flags.imatrix;
    case C::no_imatrix:
      return !t.flags.imatrix;
    case C::rows_misfit_base:
      return t.row_length % block_size(t.base_type) != 0;
    case C::experts_8:
      return s.n_expert == 8;
  }
  PTQ_ASSERT(false);
}

// Whether a rule written for `rule_role` types a tensor of `role`: Phi-3's fused
// attn_qkv takes every attn_v rule, as llama-quantize's category_is_attn_v
// gives it (its own attn_qkv branch comes after and is never reached).
bool rule_applies(GgufTensorRole rule_role, GgufTensorRole role) {
  return rule_role == role || (rule_role == R::attn_v && role == R::attn_qkv);
}

std::uint32_t rule_type(const GgufPolicy& policy, GgufTensorRole role, const TensorContext& t) {
  for (const GgufTypeRule& rule : policy.rules) {
    if (!rule_applies(rule.role, role)) continue;
    PTQ_ASSERT(rule.layers == L::all || t.layer >= 0);  // layer rules name block tensors only
    if (covers(rule.layers, t.layer, t.n_layer) && holds(rule.condition, t)) return rule.type;
  }
  return policy.base_type;
}

std::string type_name(std::uint32_t type) {
  const gguf::TensorTypeInfo* info = gguf::find_tensor_type(type);
  return info ? std::string(info->name) : std::to_string(type);
}

// tensor_type_fallback: rows that do not fit `type`'s blocks.
std::uint32_t fit_rows(std::uint32_t type, std::int64_t row_length, std::string_view name) {
  if (row_length % block_size(type) == 0) return type;
  const auto* f = std::find_if(std::begin(kFallbacks), std::end(kFallbacks),
                               [&](const Fallback& x) { return x.from == type; });
  if (f == std::end(kFallbacks)) {
    throw input_error("GGUF tensor " + std::string(name),
                      "a row length that is a multiple of " + std::to_string(block_size(type)) +
                          " for " + type_name(type) + " (llama-quantize has no fallback type)",
                      std::to_string(row_length));
  }
  return row_length % block_size(f->to) == 0 ? f->to : F16;
}

// tensor_allows_quantization, the part that concerns llama models.
bool quantizable(std::string_view name, std::span<const std::int64_t> ne) {
  int dims = static_cast<int>(ne.size());
  while (dims > 1 && ne[dims - 1] == 1) --dims;  // ggml_n_dims
  return dims >= 2 && name.ends_with("weight") && name.find("_norm.weight") == name.npos &&
         name.find("ffn_gate_inp.weight") == name.npos;  // a router stays as it is
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::toupper(static_cast<unsigned char>(x)) ==
           std::toupper(static_cast<unsigned char>(y));
  });
}

}  // namespace

GgufTensorName parse_gguf_tensor_name(std::string_view name) {
  GgufTensorName out;
  std::string_view rest = name;
  if (rest.starts_with(kBlockPrefix)) {
    rest.remove_prefix(kBlockPrefix.size());
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out.layer);
    if (ec != std::errc{} || end == rest.data() + rest.size() || *end != '.' || out.layer < 0) {
      return {};
    }
    rest.remove_prefix(static_cast<std::size_t>(end - rest.data()) + 1);
  }
  if (!rest.ends_with(kWeightSuffix)) return out;
  rest.remove_suffix(kWeightSuffix.size());
  for (const RoleName& r : kRoleNames) {
    if (r.stem == rest && r.in_block == (out.layer >= 0)) out.role = r.role;
  }
  return out;
}

std::string gguf_weight_name(GgufTensorRole role, int layer, bool experts) {
  const auto* r =
      std::find_if(std::begin(kRoleNames), std::end(kRoleNames),
                   [&](const RoleName& x) { return x.role == role && x.experts == experts; });
  PTQ_ASSERT(r != std::end(kRoleNames));
  const std::string weight = std::string(r->stem) + std::string(kWeightSuffix);
  if (!r->in_block) return weight;
  PTQ_ASSERT(layer >= 0);
  return std::string(kBlockPrefix) + std::to_string(layer) + "." + weight;
}

std::span<const GgufPolicy> gguf_policies() { return kPolicies; }

const GgufPolicy* find_policy(std::string_view name) {
  for (const Alias& a : kAliases) {
    if (equal_ignoring_case(name, a.alias)) name = a.name;
  }
  for (const GgufPolicy& p : kPolicies) {
    if (equal_ignoring_case(name, p.name)) return &p;
  }
  return nullptr;
}

GgufModelShape gguf_model_shape(const gguf::File& file) {
  const auto where = [&](const std::string& key) { return file.path().string() + ": " + key; };
  const std::string arch =
      file.require("general.architecture").as_string(where("general.architecture"));
  const auto count = [&](const std::string& key) {
    return static_cast<int>(file.require(key).as_int(where(key)));
  };
  const std::string heads = arch + ".attention.head_count", kv_heads = heads + "_kv";
  const std::string experts = arch + ".expert_count";
  return {.n_layer = count(arch + ".block_count"),
          .n_head = count(heads),
          .n_head_kv = file.find(kv_heads) ? count(kv_heads) : count(heads),
          .n_expert = file.find(experts) ? count(experts) : 0,
          .tied_embeddings = file.find_tensor("output.weight") == nullptr};
}

std::optional<std::uint32_t> gguf_tensor_type(const GgufPolicy& policy, std::string_view name,
                                              std::span<const std::int64_t> ne,
                                              const GgufModelShape& shape,
                                              const GgufQuantizeFlags& flags) {
  if (!quantizable(name, ne)) return std::nullopt;
  if (shape.n_layer < 1) {
    throw input_error("GGUF tensor " + std::string(name), "a model shape with layers",
                      std::to_string(shape.n_layer) + " layers");
  }
  const GgufTensorName parsed = parse_gguf_tensor_name(name);
  if (parsed.layer >= shape.n_layer) {
    throw input_error("GGUF tensor " + std::string(name),
                      "a layer below " + std::to_string(shape.n_layer),
                      std::to_string(parsed.layer));
  }
  std::uint32_t type = policy.base_type;
  if (!flags.pure) {
    // Tied embeddings: the one matrix serves as the output, so it gets the output's type.
    const bool as_output = parsed.role == R::token_embd && shape.tied_embeddings;
    const TensorContext t{parsed.layer, shape.n_layer, ne[0], policy.base_type, shape, flags};
    type = rule_type(policy, as_output ? R::output : parsed.role, t);
  }
  return fit_rows(type, ne[0], name);
}

}  // namespace ptq
