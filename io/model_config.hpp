#pragma once
// config.json of the Llama family: Llama, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k norms),
// Phi-3 (fused q/k/v and gate/up tensors, LongRoPE).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ptq {

enum class Architecture { Llama, Mistral, Qwen2, Qwen3, Phi3 };

std::string_view architecture_name(Architecture a);
// "llama, mistral, qwen2, qwen3, phi3" — used in the unsupported-architecture error.
std::string supported_architectures();

enum class RopeType { Default, Llama3, LongRope };

struct RopeConfig {
  double theta = 10000.0;
  RopeType type = RopeType::Default;
  // llama3 scaling (rope_type "llama3"); ignored for Default.
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
  bool qk_norm = false;         // Qwen3: RMSNorm over head_dim on q and k
  // Mistral's sliding-window attention: the forward attends to every earlier
  // position, which is the same only for sequences this long or shorter
  // (0 = no window). Longer sequences are refused (check_sequence_length).
  int sliding_window = 0;
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
