#pragma once
// config.json of the Llama family: Llama, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k norms),
// Phi-3 (fused q/k/v and gate/up tensors, LongRoPE), Gemma 2 and 3 (norms around
// each sublayer, GeGLU, soft-capping, sliding-window layers), and the mixtures of
// experts Mixtral and Qwen3-MoE (a router and top-k experts in place of the MLP).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ptq {

enum class Architecture { Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma2, Gemma3, Mixtral, Qwen3Moe };

std::string_view architecture_name(Architecture a);
// "llama, mistral, qwen2, qwen3, phi3" — used in the unsupported-architecture error.
std::string supported_architectures();

enum class RopeType { Default, Linear, Llama3, LongRope };
std::string_view rope_type_name(RopeType type);  // as config.json spells it

struct RopeConfig {
  double theta = 10000.0;
  RopeType type = RopeType::Default;
  // linear (every frequency divided by it) and llama3 scaling; ignored for Default.
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;  // llama3 and longrope
  // longrope (Phi-3): every frequency divided by its factor, the short ones for
  // sequences of at most original_max_position_embeddings tokens, the long ones
  // beyond; cos and sin scaled by attention_factor.
  std::vector<double> short_factor, long_factor;  // [head_dim / 2]
  double attention_factor = 1.0;
};

// A mixture-of-experts MLP (Mixtral, Qwen3-MoE): a router Linear scores the
// `experts` SwiGLU MLPs for each token, the token goes through the
// experts_per_token best, and their outputs are summed weighted by the
// router's softmax probabilities, renormalized over the chosen experts when
// normalize_top_k (Mixtral always; Qwen3-MoE's norm_topk_prob).
struct MoeConfig {
  int experts = 0;  // 0: the model has no MoE layers
  int experts_per_token = 0;
  int intermediate_size = 0;  // each expert's
  bool normalize_top_k = true;
  std::vector<char> layers;  // per layer: 1 where the MLP is a mixture (Qwen3-MoE may mix)
};

// The MLP's gate activation: silu (SwiGLU) or GELU with the tanh approximation
// (GeGLU, Gemma's gelu_pytorch_tanh).
enum class Activation { silu, gelu_tanh };

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string model_type;  // as written in config.json
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // config's head_dim, else hidden_size / num_heads
  int vocab_size = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2; Llama's attention_bias)
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3, Gemma 3: RMSNorm over head_dim on q and k
  Activation activation = Activation::silu;
  // Gemma: every RMSNorm scales by (1 + w); load_block and the final norm add
  // the 1 when they read w, so the forward multiplies by the stored vector.
  bool norm_plus_one = false;
  // Gemma 2/3: RMSNorms on each sublayer's output before its residual add
  // (post_attention_layernorm, post_feedforward_layernorm); the MLP's input
  // norm is then pre_feedforward_layernorm.
  bool sandwich_norms = false;
  double embed_scale = 1.0;        // Gemma: the embedding rows times sqrt(hidden_size)
  double query_scale = 0.0;        // attention scores' scale; 0: 1/sqrt(head_dim)
  double attn_logit_softcap = 0;   // Gemma 2: scores become cap * tanh(scores / cap); 0: none
  double final_logit_softcap = 0;  // Gemma 2: the same on the logits
  // Sliding-window attention. Mistral (and Phi-3): the forward attends to every
  // earlier position, which is the same only for sequences this long or
  // shorter (0 = no window); longer sequences are refused
  // (check_sequence_length). Gemma: the layers flagged in sliding_layers attend
  // to the latest sliding_window positions (themselves included), as
  // transformers computes it, at any length.
  int sliding_window = 0;
  std::vector<char> sliding_layers;  // Gemma: per layer; empty otherwise
  RopeConfig local_rope;             // Gemma 3: the sliding layers' RoPE
  bool sliding(int layer) const {
    return !sliding_layers.empty() && sliding_layers[static_cast<std::size_t>(layer)] != 0;
  }
  MoeConfig moe;
  bool is_moe(int layer) const {
    return !moe.layers.empty() && moe.layers[static_cast<std::size_t>(layer)] != 0;
  }
  bool has_moe() const { return moe.experts > 0; }
  std::vector<int> eos_token_ids;
  int bos_token_id = -1;

  // Throws InputError if sizes are inconsistent (e.g. heads not dividing kv heads).
  void validate(const std::filesystem::path& source) const;
  // InputError when the forward cannot compute `seq_len` tokens exactly (a
  // sequence longer than the sliding window).
  void check_sequence_length(std::int64_t seq_len) const;
};

// Reads <dir>/config.json (or the given .json file).
ModelConfig load_model_config(const std::filesystem::path& path);

}  // namespace ptq
