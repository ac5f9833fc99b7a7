// The tensor plan of a GGUF model file: which checkpoint tensor becomes which
// llama.cpp tensor (one table), in the converter's order, and llama's rope row
// permutation of q and k.
#include "pipeline/formats/gguf_model.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <numbers>
#include <optional>
#include <set>
#include <string>

#include "io/error.hpp"
#include "io/moe_tensors.hpp"

namespace ptq {
namespace {

// Which architectures' llama.cpp loaders create a tensor (models/llama.cpp,
// qwen2.cpp, qwen3.cpp, phi3.cpp, gemma2.cpp, gemma3.cpp, qwen3moe.cpp): a
// tensor no loader creates makes llama.cpp refuse the file ("wrong number of
// tensors"). Phi-3 keeps q/k/v and gate/up fused; the mixture families' routers
// and experts are planned by moe_entries, not by this table.
enum ArchBits : unsigned {
  kLlama = 1,
  kQwen2 = 2,
  kQwen3 = 4,
  kPhi3 = 8,
  kGemma2 = 16,
  kGemma3 = 32,
  kMixtral = 64,  // llama.cpp's llama graph with experts
  kQwen3Moe = 128,
  kGemma = kGemma2 | kGemma3,
  kBiased = kLlama | kQwen2 | kQwen3,  // q/k/v biases
  kUnfused = kBiased | kGemma,
  kDense = kUnfused | kPhi3,     // an MLP per layer
  kMoe = kMixtral | kQwen3Moe,   // experts in every layer (moe_entries)
  kAttention = kUnfused | kMoe,  // q, k and v in tensors of their own
  kAllArchs = kDense | kMoe
};

enum class RopeRows { none, q, k };  // llama's permutation over n_head (q) or n_kv_head (k)

// One row per HF name: model-level names whole, layer names after
// "model.layers.N." (GGUF: after "blk.N.").
struct TensorRule {
  bool in_layer;
  std::string_view hf;
  std::string_view gguf;
  RopeRows rope;
  unsigned archs;
};

// tensor_mapping.py's entries for these families. Biases of q/k are permuted
// like their weights; o_proj and MLP biases exist only in llama.cpp's llama
// loader, q/k norms only in qwen3's and gemma3's. Gemma's norms around each
// sublayer take other names: its post_attention_layernorm is the attention
// output's norm, pre_feedforward_layernorm the MLP input's.
constexpr std::array<TensorRule, 26> kTensorRules{{
    {false, "model.embed_tokens.weight", "token_embd.weight", RopeRows::none, kAllArchs},
    {false, "model.norm.weight", "output_norm.weight", RopeRows::none, kAllArchs},
    {false, "lm_head.weight", "output.weight", RopeRows::none, kAllArchs},
    {true, "input_layernorm.weight", "attn_norm.weight", RopeRows::none, kAllArchs},
    {true, "post_attention_layernorm.weight", "ffn_norm.weight", RopeRows::none,
     kAllArchs & ~kGemma},
    {true, "post_attention_layernorm.weight", "post_attention_norm.weight", RopeRows::none, kGemma},
    {true, "pre_feedforward_layernorm.weight", "ffn_norm.weight", RopeRows::none, kGemma},
    {true, "post_feedforward_layernorm.weight", "post_ffw_norm.weight", RopeRows::none, kGemma},
    {true, "self_attn.q_proj.weight", "attn_q.weight", RopeRows::q, kAttention},
    {true, "self_attn.q_proj.bias", "attn_q.bias", RopeRows::q, kBiased},
    {true, "self_attn.k_proj.weight", "attn_k.weight", RopeRows::k, kAttention},
    {true, "self_attn.k_proj.bias", "attn_k.bias", RopeRows::k, kBiased},
    {true, "self_attn.v_proj.weight", "attn_v.weight", RopeRows::none, kAttention},
    {true, "self_attn.v_proj.bias", "attn_v.bias", RopeRows::none, kBiased},
    {true, "self_attn.o_proj.weight", "attn_output.weight", RopeRows::none, kAllArchs},
    {true, "self_attn.o_proj.bias", "attn_output.bias", RopeRows::none, kLlama},
    {true, "self_attn.q_norm.weight", "attn_q_norm.weight", RopeRows::none,
     kQwen3 | kGemma3 | kQwen3Moe},
    {true, "self_attn.k_norm.weight", "attn_k_norm.weight", RopeRows::none,
     kQwen3 | kGemma3 | kQwen3Moe},
    {true, "mlp.gate_proj.weight", "ffn_gate.weight", RopeRows::none, kUnfused},
    {true, "mlp.gate_proj.bias", "ffn_gate.bias", RopeRows::none, kLlama},
    {true, "mlp.up_proj.weight", "ffn_up.weight", RopeRows::none, kUnfused},
    {true, "mlp.up_proj.bias", "ffn_up.bias", RopeRows::none, kLlama},
    {true, "mlp.down_proj.weight", "ffn_down.weight", RopeRows::none, kDense},
    {true, "mlp.down_proj.bias", "ffn_down.bias", RopeRows::none, kLlama},
    // Phi-3: NEOX rope (rows in HF's order); ffn_up holds gate's rows, then up's.
    {true, "self_attn.qkv_proj.weight", "attn_qkv.weight", RopeRows::none, kPhi3},
    {true, "mlp.gate_up_proj.weight", "ffn_up.weight", RopeRows::none, kPhi3},
}};

// Buffers the converter drops (old checkpoints store rope's inverse frequencies).
constexpr std::string_view kSkippedSuffix = ".rotary_emb.inv_freq";
constexpr std::string_view kHfLayerPrefix = "model.layers.";
constexpr std::string_view kGgufLayerPrefix = "blk.";
// Tensors made from config.json (rope frequency factors), not from a checkpoint tensor.
constexpr std::string_view kRopeFreqs = "rope_freqs.weight";
constexpr std::string_view kRopeFactorsLong = "rope_factors_long.weight";
constexpr std::string_view kRopeFactorsShort = "rope_factors_short.weight";

struct ArchitectureRow {
  Architecture arch;
  std::string_view gguf;
  unsigned bit;
};
constexpr std::array<ArchitectureRow, 9> kArchitectures{{
    {Architecture::Llama, "llama", kLlama},
    {Architecture::Mistral, "llama", kLlama},
    {Architecture::Qwen2, "qwen2", kQwen2},
    {Architecture::Qwen3, "qwen3", kQwen3},
    {Architecture::Phi3, "phi3", kPhi3},
    {Architecture::Gemma2, "gemma2", kGemma2},
    {Architecture::Gemma3, "gemma3", kGemma3},
    {Architecture::Mixtral, "llama", kMixtral},
    {Architecture::Qwen3Moe, "qwen3moe", kQwen3Moe},
}};

const ArchitectureRow& architecture_row(Architecture arch) {
  const auto* row = std::find_if(kArchitectures.begin(), kArchitectures.end(),
                                 [&](const ArchitectureRow& r) { return r.arch == arch; });
  if (row == kArchitectures.end())
    throw input_error(
        "GGUF architecture of model_type " + std::string(architecture_name(arch)),
        "llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text, mixtral or qwen3_moe (the "
        "families ptq writes to GGUF)",
        std::string(architecture_name(arch)));
  return *row;
}

// "<prefix>N.<rest>" -> (N, rest); nullopt when `name` is not a layer name.
std::optional<std::pair<int, std::string_view>> split_layer(std::string_view name,
                                                            std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  int layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc() || layer < 0 || end == name.data() + name.size() || *end != '.')
    return std::nullopt;
  return std::pair{layer, name.substr(static_cast<std::size_t>(end - name.data()) + 1)};
}

// The rule of a name (HF or GGUF side) and its layer (-1 outside the layers):
// the one for architecture bit `arch` where two share a name (Phi-3's ffn_up),
// else the first, which plan_entry refuses for `arch` by name.
std::optional<std::pair<const TensorRule*, int>> find_rule(std::string_view name, bool gguf_side,
                                                           unsigned arch) {
  const auto layer_name = split_layer(name, gguf_side ? kGgufLayerPrefix : kHfLayerPrefix);
  std::optional<std::pair<const TensorRule*, int>> found;
  for (const TensorRule& rule : kTensorRules) {
    const std::string_view key = gguf_side ? rule.gguf : rule.hf;
    std::optional<std::pair<const TensorRule*, int>> match;
    if (rule.in_layer && layer_name && layer_name->second == key)
      match = std::pair{&rule, layer_name->first};
    if (!rule.in_layer && name == key) match = std::pair{&rule, -1};
    if (match && (rule.archs & arch) != 0) return match;
    if (match && !found) found = match;
  }
  return found;
}

std::string layer_name(std::string_view prefix, int layer, std::string_view rest) {
  return std::string(prefix) + std::to_string(layer) + "." + std::string(rest);
}

int rope_heads(const TensorRule& rule, const ModelConfig& config) {
  if (gguf_architecture(config.arch) != "llama") return 0;  // qwen: NEOX rope, HF's order
  switch (rule.rope) {
    case RopeRows::q:
      return config.num_heads;
    case RopeRows::k:
      return config.num_kv_heads;
    case RopeRows::none:
      return 0;
  }
  return 0;
}

// The plan entry of one matched rule; `shape` is the HF shape (outermost first).
GgufTensorPlan plan_entry(const TensorRule& rule, int layer, std::span<const std::int64_t> shape,
                          const ModelConfig& config, const std::string& where) {
  if ((rule.archs & architecture_row(config.arch).bit) == 0) {
    throw input_error(
        where,
        "a tensor llama.cpp's " + std::string(gguf_architecture(config.arch)) + " models hold",
        "one it has no place for (" + std::string(rule.gguf) + ")");
  }
  GgufTensorPlan plan;
  plan.hf_name = rule.in_layer ? layer_name(kHfLayerPrefix, layer, rule.hf) : std::string(rule.hf);
  plan.gguf_name =
      rule.in_layer ? layer_name(kGgufLayerPrefix, layer, rule.gguf) : std::string(rule.gguf);
  plan.ne.assign(shape.rbegin(), shape.rend());
  plan.rope_heads = rope_heads(rule, config);
  plan.storage = shape.size() <= 1 ? GgufStorage::f32 : GgufStorage::weight;
  if (config.norm_plus_one && rule.hf.ends_with("norm.weight")) plan.offset = 1.0f;
  if (plan.rope_heads > 0 &&
      (shape.empty() || shape[0] % (std::int64_t{2} * plan.rope_heads) != 0)) {
    throw input_error(
        where, "rows divisible into " + std::to_string(plan.rope_heads) + " heads of an even size",
        shape.empty() ? "a scalar" : std::to_string(shape[0]) + " rows");
  }
  return plan;
}

// A mixture layer's tensors in llama.cpp: the router, kept float32 (the
// converter's choice; llama-quantize never quantizes it), and each expert
// Linear's role stacked over the experts, innermost first {in, out, experts}.
constexpr std::string_view kRouterStem = "ffn_gate_inp.weight";

std::string_view expert_stem(ExpertLinear linear) {
  switch (linear) {
    case ExpertLinear::gate:
      return "ffn_gate_exps.weight";
    case ExpertLinear::up:
      return "ffn_up_exps.weight";
    case ExpertLinear::down:
      return "ffn_down_exps.weight";
  }
  PTQ_ASSERT(false);
}

// Mixture layer `layer`'s router and stacked experts, the parts named in the
// per-expert layout; `source` says where a checkpoint keeps them (null for a
// file's plan).
std::vector<GgufTensorPlan> moe_entries(const ModelConfig& c, int layer, const MoeTensors* source) {
  const MoeTensors written = per_expert_tensors(c, layer);
  const std::int64_t experts = c.moe.experts, hidden = c.hidden_size;
  GgufTensorPlan router;
  router.hf_name = (source != nullptr ? source->router : written.router) + ".weight";
  router.gguf_name = layer_name(kGgufLayerPrefix, layer, kRouterStem);
  router.ne = {hidden, experts};
  router.storage = GgufStorage::f32;
  std::vector<GgufTensorPlan> out = {router};
  for (ExpertLinear linear : all_expert_linears) {
    GgufTensorPlan& stack = out.emplace_back();
    stack.gguf_name = layer_name(kGgufLayerPrefix, layer, expert_stem(linear));
    const std::array<std::int64_t, 2> shape = expert_shape(c, linear);
    stack.ne = {shape[1], shape[0], experts};
    for (int e = 0; e < experts; ++e) {
      GgufExpertPart& part = stack.experts.emplace_back();
      part.hf_name = block_tensor_name(layer, written.expert_module(e, linear)) + ".weight";
      if (source == nullptr) continue;
      ExpertRows rows = expert_rows(c, layer, *source, e, linear);
      part.source = std::move(rows.tensor);
      part.source_row = rows.first_row;
    }
  }
  return out;
}

// The checkpoint tensors a mixture layer's entries read, each of the shape the
// config gives it; InputError naming the tensor otherwise.
std::vector<std::string> moe_sources(const ModelConfig& c, int layer, const MoeTensors& names,
                                     const Checkpoint& checkpoint) {
  std::vector<std::string> out;
  for (ExpectedTensor& t : moe_source_tensors(c, layer, names)) {
    checkpoint.require(t.name, t.shape);
    out.push_back(std::move(t.name));
  }
  return out;
}

// The tensors made from config.json: llama3's frequency factors, LongRoPE's two lists.
std::vector<GgufTensorPlan> rope_entries(const ModelConfig& config) {
  const auto entry = [&](std::string_view name) {
    return GgufTensorPlan{"", std::string(name), {config.head_dim / 2}, 0, GgufStorage::f32};
  };
  if (config.rope.type == RopeType::Llama3) return {entry(kRopeFreqs)};
  if (config.rope.type == RopeType::LongRope)
    return {entry(kRopeFactorsLong), entry(kRopeFactorsShort)};
  return {};
}

}  // namespace

std::string_view gguf_architecture(Architecture arch) { return architecture_row(arch).gguf; }

std::int64_t GgufTensorPlan::rows() const {
  std::int64_t n = 1;
  for (std::size_t i = 1; i < ne.size(); ++i) n *= ne[i];
  return n;
}

std::vector<std::int64_t> GgufTensorPlan::hf_shape() const { return {ne.rbegin(), ne.rend()}; }

bool is_gemma(Architecture arch) {
  return arch == Architecture::Gemma2 || arch == Architecture::Gemma3;
}

double llamacpp_gemma_query_scale(const ModelConfig& config) {
  const int large_layers = config.arch == Architecture::Gemma2 ? 46 : 62;
  const int dim =
      config.num_layers == large_layers ? config.hidden_size / config.num_heads : config.head_dim;
  return 1.0 / std::sqrt(static_cast<double>(dim));
}

bool llamacpp_gemma_sliding(Architecture arch, int layer) {
  const int pattern = arch == Architecture::Gemma2 ? 2 : 6;
  return layer % pattern < pattern - 1;
}

namespace {

// A Gemma config as llama.cpp's gemma2/gemma3 graphs compute it (their
// loaders fix the query scale, the sliding layers and Gemma 3's local RoPE;
// gemma2's reuses the embedding as the head).
void require_llamacpp_gemma(const ModelConfig& c, const std::string& where) {
  const double scale = llamacpp_gemma_query_scale(c);
  if (std::abs(c.query_scale - scale) > 1e-6 * scale)
    throw input_error(where + ": query_pre_attn_scalar",
                      "attention scores scaled by " + std::to_string(scale) +
                          ", which llama.cpp fixes for a Gemma model of this shape",
                      std::to_string(c.query_scale));
  for (int layer = 0; layer < c.num_layers; ++layer) {
    if (c.sliding(layer) != llamacpp_gemma_sliding(c.arch, layer))
      throw input_error(where + ": layer_types[" + std::to_string(layer) + "]",
                        std::string(llamacpp_gemma_sliding(c.arch, layer) ? "sliding" : "full") +
                            " attention (llama.cpp fixes the pattern: Gemma 2 slides on even "
                            "layers, Gemma 3 on all but every sixth)",
                        c.sliding(layer) ? "sliding" : "full");
  }
  if (c.arch == Architecture::Gemma2) {
    if (!c.tie_word_embeddings)
      throw input_error(where + ": tie_word_embeddings",
                        "true (llama.cpp's gemma2 loader has no output.weight)", "false");
    if (c.attn_logit_softcap <= 0 || c.final_logit_softcap <= 0)
      throw input_error(where + ": attn_logit_softcapping, final_logit_softcapping",
                        "positive values (llama.cpp's gemma2 graph always soft-caps)", "null");
    return;
  }
  if (c.attn_logit_softcap > 0 || c.final_logit_softcap > 0)
    throw input_error(where + ": attn_logit_softcapping, final_logit_softcapping",
                      "null for Gemma 3 (llama.cpp's gemma3 graph has no soft-capping)",
                      "a soft-capping value");
  if (c.local_rope.type != RopeType::Default || c.local_rope.theta != 10000.0)
    throw input_error(where + ": rope_parameters.sliding_attention",
                      "default RoPE of base 10000 (llama.cpp fixes Gemma 3's local RoPE)",
                      std::string(rope_type_name(c.local_rope.type)) + " RoPE of base " +
                          std::to_string(c.local_rope.theta));
}

}  // namespace

namespace {

// A mixture-of-experts config as llama.cpp's llama (Mixtral) and qwen3moe
// graphs run it: experts in every layer, their weights renormalized over the
// chosen ones.
void require_llamacpp_moe(const ModelConfig& c, const std::string& where) {
  for (int layer = 0; layer < c.num_layers; ++layer)
    if (!c.is_moe(layer))
      throw input_error(where + ": mlp_only_layers, decoder_sparse_step",
                        "experts in every layer (llama.cpp's " +
                            std::string(gguf_architecture(c.arch)) +
                            " graph has no dense MLP layers)",
                        "a dense MLP in layer " + std::to_string(layer));
  if (!c.moe.normalize_top_k)
    throw input_error(where + ": norm_topk_prob",
                      "true (llama.cpp renormalizes the chosen experts' weights)", "false");
}

// The plan entries of a checkpoint's mixture layers, by the checkpoint tensor
// each reads: a layer's four entries are placed where the first such tensor
// comes in the converter's order.
std::map<std::string, std::vector<GgufTensorPlan>> moe_plan(const ModelConfig& c,
                                                            const Checkpoint& checkpoint,
                                                            std::set<std::string>& read) {
  std::map<std::string, std::vector<GgufTensorPlan>> by_source;
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const MoeTensors names = moe_tensors(
        c, layer, [&](const std::string& name) { return checkpoint.find(name) != nullptr; });
    const std::vector<std::string> sources = moe_sources(c, layer, names, checkpoint);
    read.insert(sources.begin(), sources.end());
    const auto first =
        std::min_element(sources.begin(), sources.end(), [&](const auto& a, const auto& b) {
          const auto &fa = checkpoint.require(a).file, &fb = checkpoint.require(b).file;
          return fa.filename() != fb.filename() ? fa.filename() < fb.filename() : a < b;
        });
    by_source[*first] = moe_entries(c, layer, &names);
  }
  return by_source;
}

}  // namespace

void require_gguf_expressible(const ModelConfig& config, const std::string& where) {
  if (config.rope.type == RopeType::Llama3 && gguf_architecture(config.arch) != "llama") {
    throw input_error(where + ": rope_type llama3",
                      "the llama architecture (llama.cpp reads llama3 rope only there)",
                      std::string(architecture_name(config.arch)));
  }
  if (is_gemma(config.arch)) require_llamacpp_gemma(config, where);
  if (config.has_moe()) require_llamacpp_moe(config, where);
}

std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelConfig& config,
                                             const Checkpoint& checkpoint) {
  const std::string where = checkpoint.path().string();
  require_gguf_expressible(config, where);
  std::vector<GgufTensorPlan> plan = rope_entries(config);
  std::set<std::string> expert_tensors;
  auto moe = config.has_moe() ? moe_plan(config, checkpoint, expert_tensors)
                              : std::map<std::string, std::vector<GgufTensorPlan>>{};
  // The converter reads shard files in name order, each file's tensors sorted.
  auto tensors = checkpoint.tensors();
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorView* a, const TensorView* b) {
    return a->file.filename() < b->file.filename();
  });
  for (const TensorView* t : tensors) {
    if (t->name.ends_with(kSkippedSuffix)) continue;
    if (expert_tensors.contains(t->name)) {
      if (auto it = moe.find(t->name); it != moe.end())
        for (GgufTensorPlan& entry : it->second) plan.push_back(std::move(entry));
      continue;
    }
    const std::string tensor_where = where + ": tensor " + t->name;
    const auto match = find_rule(t->name, /*gguf_side=*/false, architecture_row(config.arch).bit);
    if (!match || match->second >= config.num_layers) {
      throw input_error(tensor_where, "a tensor of a " + supported_architectures() + " checkpoint",
                        "a name llama.cpp's converter does not map");
    }
    if (match->first->gguf == "output.weight" && config.tie_word_embeddings) continue;
    plan.push_back(plan_entry(*match->first, match->second, t->shape, config, tensor_where));
  }
  return plan;
}

namespace {

// A file's router or stacked expert tensor, as moe_entries plans it; nullopt
// for any other name.
std::optional<GgufTensorPlan> file_moe_entry(const gguf::TensorInfo& t, const ModelConfig& config,
                                             const std::string& where) {
  const auto layer = split_layer(t.name, kGgufLayerPrefix);
  if (!layer || layer->first >= config.num_layers || !config.is_moe(layer->first))
    return std::nullopt;
  for (GgufTensorPlan& entry : moe_entries(config, layer->first, nullptr)) {
    if (entry.gguf_name != t.name) continue;
    if (entry.ne != t.ne)
      throw input_error(where, "ne " + shape_text(entry.ne) + " (from the file's hyperparameters)",
                        shape_text(t.ne));
    return std::move(entry);
  }
  return std::nullopt;
}

}  // namespace

std::vector<GgufTensorPlan> gguf_file_plan(const gguf::File& file, const ModelConfig& config) {
  std::vector<GgufTensorPlan> plan;
  for (const gguf::TensorInfo& t : file.tensors()) {
    const std::string where = file.path().string() + ": tensor " + t.name;
    if (t.name == kRopeFreqs || t.name == kRopeFactorsLong || t.name == kRopeFactorsShort) {
      plan.push_back({"", t.name, t.ne, 0, GgufStorage::f32});
      continue;
    }
    if (auto entry = file_moe_entry(t, config, where)) {
      plan.push_back(std::move(*entry));
      continue;
    }
    const auto match = find_rule(t.name, /*gguf_side=*/true, architecture_row(config.arch).bit);
    if (!match || match->second >= config.num_layers)
      throw input_error(where,
                        "a tensor of llama.cpp's llama, qwen2, qwen3, phi3, gemma2, gemma3 or "
                        "qwen3moe models",
                        "a name ptq does not map");
    const std::vector<std::int64_t> shape(t.ne.rbegin(), t.ne.rend());
    plan.push_back(plan_entry(*match->first, match->second, shape, config, where));
  }
  return plan;
}

std::vector<std::int64_t> rope_row_order(std::int64_t rows, int heads) {
  PTQ_ASSERT(heads > 0 && rows % (std::int64_t{2} * heads) == 0);
  const std::int64_t head_rows = rows / heads;
  const std::int64_t half = head_rows / 2;
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t j = 0; j < half; ++j) {
      for (std::int64_t s = 0; s < 2; ++s)
        order[static_cast<std::size_t>(h * head_rows + 2 * j + s)] = h * head_rows + s * half + j;
    }
  }
  return order;
}

std::vector<std::int64_t> inverse_row_order(std::span<const std::int64_t> order) {
  std::vector<std::int64_t> inverse(order.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    inverse[static_cast<std::size_t>(order[i])] = static_cast<std::int64_t>(i);
  return inverse;
}

namespace {

MatrixRM reorder_rows(const MatrixRM& W, std::span<const std::int64_t> order) {
  PTQ_ASSERT(static_cast<std::size_t>(W.rows()) == order.size());
  MatrixRM out(W.rows(), W.cols());
  for (Eigen::Index i = 0; i < W.rows(); ++i)
    out.row(i) = W.row(order[static_cast<std::size_t>(i)]);
  return out;
}

}  // namespace

void permute_rows_for_gguf(MatrixRM& W, int heads) {
  W = reorder_rows(W, rope_row_order(W.rows(), heads));
}

void unpermute_rows_from_gguf(MatrixRM& W, int heads) {
  W = reorder_rows(W, inverse_row_order(rope_row_order(W.rows(), heads)));
}

std::vector<std::byte> permute_row_bytes(std::span<const std::byte> bytes, std::size_t row_bytes,
                                         std::span<const std::int64_t> order) {
  PTQ_ASSERT(bytes.size() == row_bytes * order.size());
  std::vector<std::byte> out(bytes.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto from = bytes.subspan(static_cast<std::size_t>(order[i]) * row_bytes, row_bytes);
    std::copy(from.begin(), from.end(), out.begin() + static_cast<std::ptrdiff_t>(i * row_bytes));
  }
  return out;
}

std::vector<std::byte> to_gguf_row_order(const GgufTensorPlan& plan,
                                         std::span<const std::byte> hf_rows) {
  if (plan.rope_heads == 0) return {hf_rows.begin(), hf_rows.end()};
  // HF's dim 0 (the permuted one) is GGUF's outermost: ne[1] of a matrix, ne[0] of a bias.
  const std::int64_t rows = plan.ne.back();
  const auto order = rope_row_order(rows, plan.rope_heads);
  return permute_row_bytes(hf_rows, hf_rows.size() / static_cast<std::size_t>(rows), order);
}

std::vector<float> gguf_config_tensor(const GgufTensorPlan& plan, const ModelConfig& config) {
  const auto floats = [](const std::vector<double>& v) {
    return std::vector<float>(v.begin(), v.end());
  };
  if (plan.gguf_name == kRopeFactorsLong) return floats(config.rope.long_factor);
  if (plan.gguf_name == kRopeFactorsShort) return floats(config.rope.short_factor);
  PTQ_ASSERT(plan.gguf_name == kRopeFreqs);
  return llama3_rope_factors(config);
}

std::vector<float> llama3_rope_factors(const ModelConfig& config) {
  // Float32 throughout, as the converter's torch code computes it.
  const RopeConfig& rope = config.rope;
  const int dim = config.head_dim;
  const auto old_context = static_cast<float>(rope.original_max_position_embeddings);
  const float low_wavelen = old_context / static_cast<float>(rope.low_freq_factor);
  const float high_wavelen = old_context / static_cast<float>(rope.high_freq_factor);
  const auto factor = static_cast<float>(rope.factor);
  std::vector<float> factors;
  for (int i = 0; i < dim; i += 2) {
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    const float freq = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
    const float wavelen = 2.0f * std::numbers::pi_v<float> / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(factor);
    } else {
      const float smooth = (old_context / wavelen - static_cast<float>(rope.low_freq_factor)) /
                           static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
      factors.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return factors;
}

}  // namespace ptq
