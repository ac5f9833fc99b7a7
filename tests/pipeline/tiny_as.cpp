// Tiny's trained weights in the layouts of other families (tiny_as.hpp).
#include "tiny_as.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/dtype.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq::test {
namespace {

namespace fs = std::filesystem;

fs::path tiny() { return fixture("models/tiny"); }

// Float16 bytes of n values 1 + N(0, spread) (offset 1) or N(0, spread) (offset 0).
std::vector<std::uint16_t> random_half(std::size_t n, float offset, float spread, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<std::uint16_t> out(n);
  for (auto& h : out) h = float_to_half(offset + normal(rng));
  return out;
}

// Tiny's tensors in Phi-3's layout: q/k/v rows stacked into qkv_proj, gate/up
// into gate_up_proj (the same model: Phi-3's forward is Llama's on those rows).
std::vector<TensorToWrite> phi3_tensors(const Checkpoint& source,
                                        std::vector<std::vector<std::byte>>& owned) {
  std::vector<TensorToWrite> out;
  const auto fuse = [&](const std::string& prefix, const std::string& name,
                        std::initializer_list<const char*> parts) {
    std::vector<std::byte>& bytes = owned.emplace_back();
    std::int64_t rows = 0;
    const TensorView* part = nullptr;
    for (const char* p : parts) {
      part = &source.require(prefix + p + ".weight");
      bytes.insert(bytes.end(), part->bytes.begin(), part->bytes.end());
      rows += part->shape[0];
    }
    out.push_back({prefix + name + ".weight", part->dtype, {rows, part->shape[1]}, bytes});
  };
  for (int l = 0;; ++l) {
    const std::string layer = "model.layers." + std::to_string(l) + ".";
    if (source.find(layer + "self_attn.q_proj.weight") == nullptr) break;
    fuse(layer + "self_attn.", "qkv_proj", {"q_proj", "k_proj", "v_proj"});
    fuse(layer + "mlp.", "gate_up_proj", {"gate_proj", "up_proj"});
  }
  constexpr const char* kParts[] = {"q_proj.", "k_proj.", "v_proj.", "gate_proj.", "up_proj."};
  for (const TensorView* t : source.tensors()) {
    const bool fused_part =
        std::any_of(std::begin(kParts), std::end(kParts),
                    [&](const char* part) { return t->name.find(part) != std::string::npos; });
    if (!fused_part) out.push_back({t->name, t->dtype, t->shape, t->bytes});
  }
  return out;
}

// Tiny's tensors as Gemma's: every norm shifted by -1 (Gemma scales by 1 + w),
// tiny's MLP input norm as pre_feedforward_layernorm, added norms on each
// sublayer's output (and Gemma 3's q/k norms) near 1 + 0. Gemma 3 gets
// `layers` layers, the last ones repeating tiny's, so that its sixth is global,
// and keeps tiny's head; Gemma 2's head is its embedding (llama.cpp's gemma2
// loader ties them).
std::vector<TensorToWrite> gemma_tensors(const Checkpoint& source, int layers, bool qk_norm,
                                         bool untied,
                                         std::vector<std::vector<std::uint16_t>>& owned) {
  std::vector<TensorToWrite> out;
  const auto shifted = [&](const TensorView& t, const std::string& name) {
    std::vector<std::uint16_t>& values = owned.emplace_back();
    for (float v : t.to_float()) values.push_back(float_to_half(v - 1.0f));
    out.push_back({name, DType::F16, t.shape, std::as_bytes(std::span(values))});
  };
  const auto added = [&](const std::string& name, std::int64_t n) {
    owned.push_back(random_half(static_cast<std::size_t>(n), 0.0f, 0.1f, 2000 + owned.size()));
    out.push_back({name, DType::F16, {n}, std::as_bytes(std::span(owned.back()))});
  };
  owned.reserve(static_cast<std::size_t>(8 * layers + 1));
  const std::int64_t hidden = source.require("model.norm.weight").shape[0];
  const std::int64_t head_dim = 64;
  int tiny_layers = 0;
  while (source.find("model.layers." + std::to_string(tiny_layers) + ".mlp.up_proj.weight"))
    ++tiny_layers;
  for (const TensorView* t : source.tensors()) {
    if (t->name == "model.norm.weight")
      shifted(*t, t->name);
    else if (!t->name.starts_with("model.layers.") && (t->name != "lm_head.weight" || untied))
      out.push_back({t->name, t->dtype, t->shape, t->bytes});
  }
  for (int l = 0; l < layers; ++l) {
    const int copied = l < tiny_layers ? l : l - (layers - tiny_layers);
    const std::string from = "model.layers." + std::to_string(copied) + ".";
    const std::string to = "model.layers." + std::to_string(l) + ".";
    for (const TensorView* t : source.tensors()) {
      if (!t->name.starts_with(from)) continue;
      const std::string rest = t->name.substr(from.size());
      if (rest == "input_layernorm.weight")
        shifted(*t, to + rest);
      else if (rest == "post_attention_layernorm.weight")
        shifted(*t, to + "pre_feedforward_layernorm.weight");
      else
        out.push_back({to + rest, t->dtype, t->shape, t->bytes});
    }
    added(to + "post_attention_layernorm.weight", hidden);
    added(to + "post_feedforward_layernorm.weight", hidden);
    if (qk_norm) {
      added(to + "self_attn.q_norm.weight", head_dim);
      added(to + "self_attn.k_norm.weight", head_dim);
    }
  }
  return out;
}

// Tiny's tensors with each MLP as `experts` experts, each tiny's MLP with
// every weight scaled by 1 + N(0, spread) (experts alike, as a trained model's
// are not, so that any top-k choice gives tiny's model nearly), under a router
// of N(0, 0.05) weights. Per-expert modules in Mixtral's v4 names, or (stacked)
// transformers v5's gate_up_proj [E, 2I, H] and down_proj [E, H, I].
std::vector<TensorToWrite> moe_tensors(const Checkpoint& source, int experts, float spread,
                                       bool stacked,
                                       std::vector<std::vector<std::uint16_t>>& owned) {
  std::vector<TensorToWrite> out;
  const auto put = [&](const std::string& name, std::vector<std::int64_t> shape,
                       std::vector<std::uint16_t> values) {
    owned.push_back(std::move(values));
    out.push_back({name, DType::F16, std::move(shape), std::as_bytes(std::span(owned.back()))});
  };
  const auto varied = [&](const TensorView& t, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, spread);
    std::vector<std::uint16_t> values;
    for (float v : t.to_float()) values.push_back(float_to_half(v * (1.0f + normal(rng))));
    return values;
  };
  for (const TensorView* t : source.tensors())
    if (t->name.find(".mlp.") == std::string::npos)
      out.push_back({t->name, t->dtype, t->shape, t->bytes});
  for (int l = 0;; ++l) {
    const std::string layer = "model.layers." + std::to_string(l) + ".";
    const TensorView* gate = source.find(layer + "mlp.gate_proj.weight");
    if (gate == nullptr) break;
    const TensorView& up = source.require(layer + "mlp.up_proj.weight");
    const TensorView& down = source.require(layer + "mlp.down_proj.weight");
    const std::int64_t inter = gate->shape[0], hidden = gate->shape[1];
    const auto seed = [&](int e, int part) {
      return static_cast<unsigned>(100 * l + 3 * e + part);
    };
    put(layer + (stacked ? "mlp.gate.weight" : "block_sparse_moe.gate.weight"), {experts, hidden},
        random_half(static_cast<std::size_t>(experts * hidden), 0.0f, 0.05f, 5000 + l));
    if (!stacked) {
      for (int e = 0; e < experts; ++e) {
        const std::string p = layer + "block_sparse_moe.experts." + std::to_string(e) + ".";
        put(p + "w1.weight", gate->shape, varied(*gate, seed(e, 0)));
        put(p + "w3.weight", up.shape, varied(up, seed(e, 1)));
        put(p + "w2.weight", down.shape, varied(down, seed(e, 2)));
      }
      continue;
    }
    std::vector<std::uint16_t> gate_up, downs;
    for (int e = 0; e < experts; ++e) {
      for (const auto& part : {varied(*gate, seed(e, 0)), varied(up, seed(e, 1))})
        gate_up.insert(gate_up.end(), part.begin(), part.end());
      const auto d = varied(down, seed(e, 2));
      downs.insert(downs.end(), d.begin(), d.end());
    }
    put(layer + "mlp.experts.gate_up_proj", {experts, 2 * inter, hidden}, std::move(gate_up));
    put(layer + "mlp.experts.down_proj", {experts, hidden, inter}, std::move(downs));
  }
  return out;
}

}  // namespace

fs::path tiny_as(const std::string& arch) {
  const fs::path dir = temp_dir("tiny-as-" + arch + "-" + std::to_string(getpid())) / "model";
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    fs::copy_file(tiny() / f, dir / f);
  nlohmann::ordered_json config =
      nlohmann::ordered_json::parse(read_bytes(tiny() / "config.json"));
  const Checkpoint source = Checkpoint::open(tiny());
  std::vector<std::vector<std::byte>> fused;
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<std::uint16_t>> gemma_owned;  // Gemma's and the experts' added bytes
  if (arch.starts_with("phi3"))
    tensors = phi3_tensors(source, fused);
  else if (arch.starts_with("gemma"))
    tensors = gemma_tensors(source, arch == "gemma3" ? 6 : 4, arch == "gemma3", arch == "gemma3",
                            gemma_owned);
  else if (arch == "mixtral1")  // tiny itself: one expert, its weight exactly 1
    tensors = moe_tensors(source, 1, 0.0f, false, gemma_owned);
  else if (arch == "mixtral" || arch == "qwen3moe")
    tensors = moe_tensors(source, arch == "mixtral" ? 8 : 4, 0.1f, arch == "qwen3moe", gemma_owned);
  else
    for (const TensorView* t : source.tensors())
      tensors.push_back({t->name, t->dtype, t->shape, t->bytes});
  const auto layers = config.at("num_hidden_layers").get<int>();
  const auto head_dim = config.at("head_dim").get<std::int64_t>();
  const std::int64_t q_rows = head_dim * config.at("num_attention_heads").get<std::int64_t>();
  const std::int64_t kv_rows = head_dim * config.at("num_key_value_heads").get<std::int64_t>();
  std::vector<std::vector<std::uint16_t>> extra;  // owns the added tensors' bytes
  const auto add = [&](const std::string& name, std::int64_t n, float offset, float spread) {
    extra.push_back(random_half(static_cast<std::size_t>(n), offset, spread, 1000 + extra.size()));
    tensors.push_back({name, DType::F16, {n}, std::as_bytes(std::span(extra.back()))});
  };
  extra.reserve(static_cast<std::size_t>(3 * layers));
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    if (arch == "qwen2") {
      add(p + "q_proj.bias", q_rows, 0.0f, 0.1f);
      add(p + "k_proj.bias", kv_rows, 0.0f, 0.1f);
      add(p + "v_proj.bias", kv_rows, 0.0f, 0.1f);
    } else if (arch == "qwen3" || arch == "qwen3moe") {
      add(p + "q_norm.weight", head_dim, 1.0f, 0.1f);
      add(p + "k_norm.weight", head_dim, 1.0f, 0.1f);
    }
  }
  if (arch == "qwen2" || arch == "qwen3") {
    const std::string name = arch == "qwen2" ? "Qwen2" : "Qwen3";
    config["architectures"] = {name + "ForCausalLM"};
    config["model_type"] = arch;
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp"}) config.erase(key);
  } else if (arch.starts_with("mixtral")) {
    config["architectures"] = {"MixtralForCausalLM"};
    config["model_type"] = "mixtral";
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp"}) config.erase(key);
    config["num_local_experts"] = arch == "mixtral1" ? 1 : 8;
    config["num_experts_per_tok"] = arch == "mixtral1" ? 1 : 2;
  } else if (arch == "qwen3moe") {
    config["architectures"] = {"Qwen3MoeForCausalLM"};
    config["model_type"] = "qwen3_moe";
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp"}) config.erase(key);
    config["num_experts"] = 4;
    config["num_experts_per_tok"] = 2;
    config["moe_intermediate_size"] = config.at("intermediate_size");
    config["norm_topk_prob"] = true;
    config["decoder_sparse_step"] = 1;
    config["mlp_only_layers"] = nlohmann::ordered_json::array();
  } else if (arch.starts_with("phi3")) {
    config["architectures"] = {"Phi3ForCausalLM"};
    config["model_type"] = "phi3";
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp"}) config.erase(key);
    if (arch == "phi3longrope") {
      std::vector<double> short_factor, long_factor;
      for (std::int64_t i = 0; i < head_dim / 2; ++i) {
        short_factor.push_back(1.0);
        long_factor.push_back(1.0 + 0.25 * static_cast<double>(i));
      }
      // Stretched 4x (attention factor 1.15, near Phi-3-mini-128k's 1.19): at 32x
      // from 64 tokens (1.35) the quantized files' KL between ptq and llama.cpp
      // reached 0.0012, llama.cpp's own flash-attention on/off KL 0.0013.
      config["max_position_embeddings"] = 256;
      config["rope_parameters"] = {{"rope_type", "longrope"},
                                   {"rope_theta", 10000.0},
                                   {"short_factor", short_factor},
                                   {"long_factor", long_factor},
                                   {"original_max_position_embeddings", 64}};
    }
  } else if (arch.starts_with("gemma")) {
    const bool gemma3 = arch == "gemma3";
    config["architectures"] = {gemma3 ? "Gemma3ForCausalLM" : "Gemma2ForCausalLM"};
    config["model_type"] = gemma3 ? "gemma3_text" : "gemma2";
    for (const char* key : {"attention_bias", "mlp_bias", "pretraining_tp", "hidden_act"})
      config.erase(key);
    config["hidden_activation"] = "gelu_pytorch_tanh";
    config["query_pre_attn_scalar"] = head_dim;
    config["sliding_window"] = 32;  // binds in 128-token windows
    config["tie_word_embeddings"] = !gemma3;
    if (gemma3) {
      config["num_hidden_layers"] = 6;
      config["attn_logit_softcapping"] = nullptr;
      config["final_logit_softcapping"] = nullptr;
      config["rope_parameters"] = {
          {"full_attention", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e6}}},
          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    }
  } else {
    config["rope_parameters"] = {
        {"rope_type", "llama3"},   {"rope_theta", 10000.0},
        {"factor", 8.0},           {"low_freq_factor", 1.0},
        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 256}};
  }
  std::ofstream(dir / "config.json") << config.dump(2);
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}
}  // namespace ptq::test
