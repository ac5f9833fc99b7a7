#pragma once
// llama-quantize's choice of a GGUF type per tensor, for llama-architecture
// models and their mixture-of-experts kin (Mixtral, Qwen3-MoE), as a table. A policy is one
// llama-quantize type name ("Q4_K_M"): a base type and rules "tensor role, layers, condition ->
// type", tried in order, the first that holds wins (none: the base type). Then,
// as llama-quantize does for every quantized type, a row length that is not a
// multiple of the chosen type's block falls back to a type of 32-weight
// blocks, or to F16 when not even that fits.
//
// Source: llama.cpp src/llama-quant.cpp (llama_tensor_get_type_impl,
// tensor_type_fallback, llama_ftype_get_default_type), checked against the
// llama-quantize binary of commit d32676d by tests/formats/gguf_policy_test.cpp.
// Types are GGUF tensor type ids (ggml.h enum ggml_type, io/gguf.hpp
// tensor_types(): 1 = F16, 12 = Q4_K, ...).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ptq {

namespace gguf {
class File;
}

// The tensors of a llama-architecture GGUF the policies tell apart, by
// llama.cpp's names: token_embd.weight, output.weight, blk.N.attn_q.weight, ...
enum class GgufTensorRole {
  token_embd,
  output,
  attn_q,
  attn_k,
  attn_v,
  attn_qkv,  // Phi-3's fused q, k, v
  attn_output,
  ffn_gate,
  ffn_up,
  ffn_down,
  other
};

struct GgufTensorName {
  GgufTensorRole role = GgufTensorRole::other;
  int layer = -1;  // N of "blk.N.", -1 outside the blocks
};

// "blk.3.attn_v.weight" -> {attn_v, 3}; "output.weight" -> {output, -1};
// "blk.3.attn_norm.weight" -> {other, 3}; a mixture layer's stacked experts
// as llama-quantize's name matching takes them: "blk.3.ffn_down_exps.weight"
// -> {ffn_down, 3}.
GgufTensorName parse_gguf_tensor_name(std::string_view name);

// The weight tensor's name: "blk.<layer>.attn_v.weight", "output.weight";
// with `experts`, a mixture layer's "blk.<layer>.ffn_gate_exps.weight" (ffn
// roles only). `layer` is ignored for token_embd and output; `role` must not
// be other.
std::string gguf_weight_name(GgufTensorRole role, int layer = -1, bool experts = false);

// The layers a rule covers, i being the layer index and n the number of layers
// (llama.cpp counts attn_v and ffn_down tensors in file order, sorted by layer:
// the counter is the layer index).
enum class GgufLayers {
  all,
  first_2,          // i < 2
  first_4,          // i < 4
  first_sixteenth,  // i < n/16
  first_eighth,     // i < n/8
  more_bits,        // llama.cpp's use_more_bits: i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
};

// What else must hold for a rule.
enum class GgufCondition {
  always,
  gqa_4,      // n_head / n_head_kv >= 4
  llama_70b,  // 80 layers with grouped-query attention (llama.cpp's LLM_TYPE_70B)
  imatrix,    // llama-quantize was given --imatrix
  no_imatrix,
  rows_misfit_base,  // ne[0] is not a multiple of the base type's block
  experts_8,         // a model of exactly 8 experts (llama.cpp's rules for Mixtral 8x7B)
};

struct GgufTypeRule {
  GgufTensorRole role;
  GgufLayers layers;
  GgufCondition condition;
  std::uint32_t type;
};

struct GgufPolicy {
  std::string_view name;    // llama-quantize's type name: "Q4_K_M"
  std::uint32_t file_type;  // general.file_type (llama_ftype: LLAMA_FTYPE_MOSTLY_Q4_K_M = 15)
  std::uint32_t base_type;  // every quantizable tensor that no rule covers
  std::span<const GgufTypeRule> rules;
};

// Q8_0, Q6_K, Q5_K_M, ..., Q2_K, IQ4_XS, IQ4_NL, Q4_0 ... Q5_1, and F16, BF16,
// F32 (plain conversions: no rules).
std::span<const GgufPolicy> gguf_policies();
// By llama-quantize's name, in any case, or its aliases (Q4_K = Q4_K_M, Q5_K =
// Q5_K_M, Q3_K = Q3_K_M); nullptr if unknown.
const GgufPolicy* find_policy(std::string_view name);

struct GgufModelShape {
  int n_layer = 0;
  int n_head = 0, n_head_kv = 0;
  int n_expert = 0;              // <arch>.expert_count; 0 without experts
  bool tied_embeddings = false;  // no output.weight: token_embd.weight is typed as output.weight
};

// The shape llama-quantize reads from a model file: <arch>.block_count,
// <arch>.attention.head_count and head_count_kv (head_count when absent),
// <arch>.expert_count (0 when absent), and whether output.weight is absent. InputError naming the
// file and key when general.architecture or a count is missing.
GgufModelShape gguf_model_shape(const gguf::File& file);

struct GgufQuantizeFlags {
  bool pure = false;     // --pure: the base type for every tensor (the row fallback still applies)
  bool imatrix = false;  // --imatrix: some rules depend on it
};

// The type llama-quantize gives tensor `name` of shape `ne` (ggml order: ne[0]
// is the row length); nullopt for a tensor it copies unchanged: fewer than 2
// dimensions (trailing 1s do not count), a name not ending in "weight", a norm,
// a router (ffn_gate_inp).
// InputError naming the tensor where llama-quantize refuses: a row length that
// fits neither the chosen type nor any fallback (e.g. Q4_0 with 840 columns),
// or a shape without layers.
std::optional<std::uint32_t> gguf_tensor_type(const GgufPolicy& policy, std::string_view name,
                                              std::span<const std::int64_t> ne,
                                              const GgufModelShape& shape,
                                              const GgufQuantizeFlags& flags = {});

}  // namespace ptq
