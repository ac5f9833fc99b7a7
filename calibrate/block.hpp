#pragma once
// One decoder block of the Llama family in float32, and the types the
// calibration and quantization stages plug into.
#include <Eigen/Core>
#include <array>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "algorithms/matrix.hpp"
#include "calibrate/tensor_names.hpp"
#include "io/model_config.hpp"

namespace ptq {

// One expert of a mixture-of-experts MLP: a gated MLP of its own.
struct ExpertWeights {
  MatrixRM gate, up;  // [intermediate, hidden]
  MatrixRM down;      // [hidden, intermediate]

  MatrixRM& weight(LinearRole role);  // gate, up or down
};

// A block's weights in float32. Callers may overwrite any matrix (e.g. with a
// dequantized copy) before running the block: that is how quantized models
// are evaluated and how GPTQ proceeds block by block.
struct BlockWeights {
  int layer = 0;
  // W: [out, in], row-major. In a mixture-of-experts layer gate, up and down
  // are empty: the MLP is `router` and `experts`.
  std::array<MatrixRM, linear_role_count> linear;
  std::array<VectorF, linear_role_count> bias;  // [out], or size 0 when absent
  // RMSNorm weights as the forward multiplies by them (Gemma's 1 + w added).
  VectorF input_norm;                           // [hidden]
  VectorF post_attention_norm;                  // [hidden]: the MLP's input norm
  VectorF q_norm, k_norm;                       // [head_dim] (Qwen3, Gemma 3), else size 0
  VectorF attention_out_norm, mlp_out_norm;     // [hidden] (Gemma 2/3), else size 0
  MatrixRM router;                              // [experts, hidden] (MoE layers), else empty
  std::vector<ExpertWeights> experts;           // MoE layers, else empty

  VectorF& norm(NormRole role);  // the member above that holds it
  const VectorF& norm(NormRole role) const;
  MatrixRM& weight(LinearRole r) { return linear[static_cast<std::size_t>(r)]; }
  const MatrixRM& weight(LinearRole r) const { return linear[static_cast<std::size_t>(r)]; }
  // The Linear `key` names in this block: an expert's, or the block's own.
  MatrixRM& weight(const LinearKey& key);
  const MatrixRM& weight(const LinearKey& key) const;
  const VectorF& bias_of(LinearRole r) const { return bias[static_cast<std::size_t>(r)]; }
  std::size_t float_count() const;  // resident size, for memory budgets
};

// Hidden states of a batch of equally long sequences.
struct Activations {
  MatrixRM x;  // [sequences * seq_len, hidden]; sequence s owns rows [s*seq_len, (s+1)*seq_len)
  int seq_len = 0;  // positions 0..seq_len-1 in every sequence

  int sequences() const { return seq_len == 0 ? 0 : static_cast<int>(x.rows()) / seq_len; }
};

// Called once per distinct Linear input with the roles that read it
// ({q,k,v}, {o}, {gate,up}, {down}) and X: [tokens, in]. Calibration collects
// Hessians and absmax through it. Sees X before any input transform.
// Which tokens an expert's inputs are taken over: those the router sends to
// it, or every token (what all-expert routing would give it).
enum class ExpertTokens { routed, all };

class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual void observe(int layer, std::span<const LinearRole> roles, const MatrixRM& x) = 0;
  // Mixture-of-experts layers: an observer that keeps per-expert statistics
  // sees, after observe() of the MLP input of every token, each expert's
  // gate/up input over its routed tokens, its down input over them, then its
  // down input over every token. Others refuse these layers (require_dense).
  virtual bool observes_experts() const { return false; }
  virtual void observe_expert(int /*layer*/, int /*expert*/, std::span<const LinearRole> /*roles*/,
                              ExpertTokens /*tokens*/, const MatrixRM& /*x*/) {}
};

// Rewrites a Linear input in place before the matmul (e.g. simulated int8
// activation quantization). Same call shape as the observer.
class LinearInputTransform {
 public:
  virtual ~LinearInputTransform() = default;
  virtual void apply(int layer, std::span<const LinearRole> roles, MatrixRM& x) const = 0;
};

// A mixture-of-experts layer's router logits [tokens, experts], as computed.
using RouterLogitsHook = std::function<void(int layer, const MatrixRM& logits)>;

struct ForwardOptions {
  // Sees every Linear input. Mixture-of-experts layers refuse observers that
  // keep no per-expert statistics (require_dense); a transform rewrites each
  // expert's inputs (the router reads the float input).
  LinearObserver* observer = nullptr;
  const LinearInputTransform* input_transform = nullptr;
  // Statistics passes need no block output: stop right after this input has
  // been observed (the activations are then left partly updated).
  std::optional<LinearInput> stop_after;
  RouterLogitsHook router_logits;  // optional
};
// A pass that only observes, or only transforms, the Linear inputs.
ForwardOptions observing(LinearObserver* observer);
ForwardOptions transforming(const LinearInputTransform* transform);

// RoPE inverse frequencies [head_dim/2] for the config (default, llama3 or
// longrope) and a sequence of seq_len tokens (LongRoPE's factors depend on it).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, int seq_len);

// cos/sin tables [seq_len, head_dim/2] of rope_inv_freq, angles in float32
// like HF; LongRoPE also scales both by its attention factor.
void rope_tables(const RopeConfig& rope, int head_dim, int seq_len, MatrixRM& cos, MatrixRM& sin);

// Rotate-half RoPE on every head (head_dim wide) of every row of x, in place,
// with those tables; row t at position t % seq_len.
void apply_rope(MatrixRM& x, const MatrixRM& cos, const MatrixRM& sin, int seq_len, int head_dim);

// gate = act(gate) * up, act the config's activation (SiLU, or GELU's tanh
// approximation); Eigen's packet exp and tanh.
void gated_activation(const ModelConfig& c, MatrixRM& gate, const MatrixRM& up);

// RMSNorm of every row, in place: x * rsqrt(mean(x^2) + eps) * w.
void rms_norm_rows(MatrixRM& x, const VectorF& w, float eps);

// The stages of a block (block_sublayers), for callers that run them one at a
// time (quantization keeps each stage's input instead of rerunning the block;
// AWQ compares sub-module outputs). block_forward is their composition.
// y = x Wᵀ + b (linear_forward resizes y) or y += x Wᵀ + b (the residual add).
void linear_forward(const MatrixRM& x, const MatrixRM& w, const VectorF& b, MatrixRM& y);
void linear_accumulate(const MatrixRM& x, const MatrixRM& w, const VectorF& b, MatrixRM& y);
// q/k/v projections of the normed input, q/k norms (Qwen3), RoPE and causal
// attention over sequences of `seq_len` rows: the input of o_proj.
MatrixRM attention_context(const ModelConfig& config, const BlockWeights& w, const MatrixRM& normed,
                            int seq_len);
// act(normed Wgateᵀ + b) * (normed Wupᵀ + b), act the config's activation
// (silu: SwiGLU, gelu_tanh: GeGLU): the input of down_proj.
MatrixRM mlp_hidden(const ModelConfig& config, const BlockWeights& w, const MatrixRM& normed);
// A sublayer's inner op on its normed input: attention_context or mlp_hidden.
MatrixRM sublayer_inner(const ModelConfig& config, const BlockWeights& w, Sublayer sublayer,
                        const MatrixRM& normed, int seq_len);
// The stream normed by the sublayer's norm.
MatrixRM sublayer_normed(const ModelConfig& config, const BlockWeights& w,
                         const SublayerSpec& sublayer, const MatrixRM& x);
// InputError naming `what` for a model with mixture-of-experts layers, where
// ptq does not do it to experts yet (a mix's costs, an observer without
// per-expert statistics).
void require_dense(const ModelConfig& config, const std::string& what);
// A mixture-of-experts MLP on the normed input: each token through its top
// experts_per_token experts by router probability, their outputs summed
// weighted (in expert order, so the sum does not depend on the threads).
// `transform` (optional) rewrites each expert's gate/up and down inputs.
MatrixRM moe_output(const ModelConfig& config, const BlockWeights& w, const MatrixRM& normed,
                    const RouterLogitsHook& hook = {},
                    const LinearInputTransform* transform = nullptr);
// The tokens (rows of the normed input) the router sends to each expert, in
// token order, with their weights in the sum: what moe_output computes first.
struct Routing {
  std::vector<std::vector<Eigen::Index>> tokens;  // [expert][i]
  std::vector<std::vector<float>> weights;        // [expert][i]
};
Routing route_tokens(const ModelConfig& config, const BlockWeights& w, const MatrixRM& normed,
                     const RouterLogitsHook& hook = {});
// One expert's gated hidden state act(x Wgateᵀ) * (x Wupᵀ): its down_proj's input.
MatrixRM expert_hidden(const ModelConfig& config, const ExpertWeights& expert, const MatrixRM& x);
// Rows `rows` of x, in order.
MatrixRM gather_rows(const MatrixRM& x, std::span<const Eigen::Index> rows);
// The residual add of the sublayer's out Linear (o_proj, down_proj) reading
// `in`: x += in Wᵀ + b, or with the family's output norm (Gemma)
// x += norm(in Wᵀ + b).
void add_sublayer_output(const ModelConfig& config, const BlockWeights& w,
                         const SublayerSpec& sublayer, const MatrixRM& in, MatrixRM& x);

// Runs block `w` over `act` in place (residual stream in, residual stream out).
void block_forward(const ModelConfig& config, const BlockWeights& w, Activations& act,
                   const ForwardOptions& options = {});

// How forward_windows walks a stream of windows: `batch_windows` whole windows at
// a time, in window order, so that observers accumulate in a fixed order whatever
// the thread count. A batch also ends before any window where `splits_before`
// (optional) is true, e.g. where the calibration source changes.
struct WindowWalk {
  int seq_len = 0;
  int batch_windows = 16;
  std::function<bool(int window)> splits_before;
};

// Runs block `w` over every window of x ([windows * seq_len, hidden]), batch by
// batch: `on_batch(first_window, windows)` (optional) is called, then `observer`
// (may be null) sees the batch's Linear inputs. With StreamUpdate::advance, x
// becomes the block's output; with keep, x is left unchanged.
enum class StreamUpdate { advance, keep };
void forward_windows(const ModelConfig& config, const BlockWeights& w, MatrixRM& x, const WindowWalk& walk,
                     LinearObserver* observer, StreamUpdate update,
                     const std::function<void(int first_window, int windows)>& on_batch = {});

}  // namespace ptq
