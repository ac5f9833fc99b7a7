#pragma once
// The one table that maps Hugging Face tensor names to their roles in the
// Llama family (Llama, Mistral, Qwen2, Qwen3, Phi-3). Every other file asks this
// table; no code elsewhere spells a tensor name.
#include <array>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_config.hpp"
#include "io/moe_tensors.hpp"

namespace ptq {

// The seven Linear layers of a decoder block, in execution order.
enum class LinearRole { q, k, v, o, gate, up, down };
inline constexpr std::array<LinearRole, 7> all_linear_roles = {
    LinearRole::q,    LinearRole::k,  LinearRole::v,   LinearRole::o,
    LinearRole::gate, LinearRole::up, LinearRole::down};
inline constexpr int linear_role_count = static_cast<int>(all_linear_roles.size());
// A mixture-of-experts layer's Linears of each expert, in execution order.
inline constexpr std::array<LinearRole, 3> expert_roles = {LinearRole::gate, LinearRole::up,
                                                           LinearRole::down};

// Which block input a Linear reads: q/k/v share one, gate/up share one. In
// execution order; the Linears reading each form one true-sequential group.
enum class LinearInput { attention_in, attention_out, mlp_in, mlp_hidden };
inline constexpr std::array<LinearInput, 4> all_linear_inputs = {
    LinearInput::attention_in, LinearInput::attention_out, LinearInput::mlp_in,
    LinearInput::mlp_hidden};

// When a Linear's bias tensor must be present.
enum class BiasRule {
  attention_bias,  // required when config.attention_bias (q, k, v)
  optional,        // loaded if the checkpoint has it (o: Llama with attention_bias)
  mlp_bias,        // required when config.mlp_bias
};

struct LinearSpec {
  LinearRole role;
  std::string_view module;  // below "model.layers.{i}."; ".weight"/".bias" appended
  LinearInput input;
  BiasRule bias;
};

// Row i describes all_linear_roles[i].
inline constexpr std::array<LinearSpec, linear_role_count> linear_specs = {{
    {LinearRole::q, "self_attn.q_proj", LinearInput::attention_in, BiasRule::attention_bias},
    {LinearRole::k, "self_attn.k_proj", LinearInput::attention_in, BiasRule::attention_bias},
    {LinearRole::v, "self_attn.v_proj", LinearInput::attention_in, BiasRule::attention_bias},
    {LinearRole::o, "self_attn.o_proj", LinearInput::attention_out, BiasRule::optional},
    {LinearRole::gate, "mlp.gate_proj", LinearInput::mlp_in, BiasRule::mlp_bias},
    {LinearRole::up, "mlp.up_proj", LinearInput::mlp_in, BiasRule::mlp_bias},
    {LinearRole::down, "mlp.down_proj", LinearInput::mlp_hidden, BiasRule::mlp_bias},
}};

// Per-block vectors (RMSNorm weights), by what they normalize: the block input
// (attention's input), the MLP's input (Llama's post_attention_layernorm,
// Gemma's pre_feedforward_layernorm), q and k per head (Qwen3, Gemma 3), and
// the attention's and the MLP's outputs before their residual adds (Gemma's
// post_attention_layernorm and post_feedforward_layernorm).
enum class NormRole { input, post_attention, q_head, k_head, attention_out, mlp_out };
inline constexpr std::array<NormRole, 6> all_norm_roles = {
    NormRole::input,  NormRole::post_attention, NormRole::q_head,
    NormRole::k_head, NormRole::attention_out,  NormRole::mlp_out};

// The norm's tensor below "model.layers.{i}." in the family, or "" when the
// family has no such norm.
std::string_view norm_tensor_suffix(const ModelConfig& config, NormRole role);
// Its length: head_dim for the per-head norms, else hidden_size.
int norm_size(const ModelConfig& config, NormRole role);

// The Linears of a block that read `input`, in execution order.
std::span<const LinearRole> roles_reading(LinearInput input);
// Its features: the in features of the Linears reading it.
int input_features(const ModelConfig& config, LinearInput input);

// A decoder block is two sublayers of one shape: the residual stream through
// the sublayer's norm feeds its first Linears (`in`); an inner op (attention;
// the gated activation) turns their outputs into the input of one Linear
// (`inner`, read by `out`), whose output, through the family's output norm
// where it has one (Gemma), is added to the stream. A mixture-of-experts layer
// replaces the MLP sublayer by its router and experts. The forward, the
// quantization stages and the AWQ/SmoothQuant sites walk this table.
enum class Sublayer { attention, mlp };
struct SublayerSpec {
  Sublayer sublayer;
  NormRole norm;      // applied to the stream before `in`
  LinearInput in;     // the normed stream
  LinearInput inner;  // the inner op's result
  LinearRole out;     // the Linear reading `inner`
  NormRole out_norm;  // on out's output before the residual add, where the family has it
};
inline constexpr std::array<SublayerSpec, 2> block_sublayers = {{
    {Sublayer::attention, NormRole::input, LinearInput::attention_in, LinearInput::attention_out,
     LinearRole::o, NormRole::attention_out},
    {Sublayer::mlp, NormRole::post_attention, LinearInput::mlp_in, LinearInput::mlp_hidden,
     LinearRole::down, NormRole::mlp_out},
}};
constexpr const SublayerSpec& sublayer_spec(Sublayer sublayer) {
  return block_sublayers[static_cast<std::size_t>(sublayer)];
}
static_assert(sublayer_spec(Sublayer::attention).sublayer == Sublayer::attention &&
              sublayer_spec(Sublayer::mlp).sublayer == Sublayer::mlp);

// Tensors outside the blocks.
inline constexpr std::string_view embed_tokens_name = "model.embed_tokens.weight";
inline constexpr std::string_view final_norm_name = "model.norm.weight";
inline constexpr std::string_view lm_head_name = "lm_head.weight";  // absent when tied

// The expert Linear a role names in a mixture-of-experts layer (gate, up or down).
ExpertLinear expert_linear(LinearRole role);

// Where a family stores a Linear: its own module (rows = its out features), or
// rows [first_row, first_row + out) of a fused module of `rows` rows (Phi-3's
// self_attn.qkv_proj holds q, k, v; mlp.gate_up_proj holds gate, up).
struct LinearStorage {
  std::string_view module;  // below "model.layers.{i}."
  std::int64_t first_row = 0;
  std::int64_t rows = 0;
};
LinearStorage linear_storage(const ModelConfig& config, LinearRole role);
// True when the family stores some Linear inside a fused tensor.
bool has_fused_linears(const ModelConfig& config);

std::string_view linear_role_name(LinearRole role);  // "q", "k", ..., "down"
const LinearSpec& linear_spec(LinearRole role);
// A block Linear's module: "model.layers.<layer>.self_attn.q_proj", ... (its
// tensors append ".weight", ".bias").
std::string linear_module_name(int layer, LinearRole role);
// Output features of a Linear: [out, in] is its weight's shape.
int linear_out_features(const ModelConfig& config, LinearRole role);
int linear_in_features(const ModelConfig& config, LinearRole role);
// One Linear of a block: a role of its own, or in a mixture-of-experts layer
// expert `expert`'s gate, up or down.
struct LinearKey {
  int layer = 0;
  LinearRole role = LinearRole::q;
  int expert = -1;  // -1: not an expert's
};
// The Linears ptq quantizes in block `layer`, in execution order: the seven
// roles, or in a mixture layer q, k, v, o and each expert's gate, up, down.
std::vector<LinearKey> block_linears(const ModelConfig& config, int layer);
// "layer 3 gate", "layer 3 expert 5 gate" (logs and errors).
std::string linear_key_text(const LinearKey& key);
// The module whose ".weight" holds the Linear in the Hugging Face layout ptq
// writes: linear_storage's module (a fused one for Phi-3's parts), or the
// expert's own module (transformers v4's names).
std::string linear_weight_module(const ModelConfig& config, const LinearKey& key);
// Weights of one block's Linears (out x in summed over the roles); with
// mixture-of-experts layers, of the largest block (the router and every
// expert), so that memory budgets bound every block.
std::int64_t block_linear_weights(const ModelConfig& config);

}  // namespace ptq
