#include "calibrate/block.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "algorithms/attention.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

// Parallel loop over rows [0, rows) in chunks; each row's work is independent,
// so results do not depend on the thread count.
template <class F>
void for_rows(Eigen::Index rows, F&& f) {
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, rows, 16), [&](const auto& r) {
    for (Eigen::Index i = r.begin(); i != r.end(); ++i) f(i);
  });
}

void rms_norm(float* x, const float* w, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += double(x[i]) * x[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (int i = 0; i < n; ++i) x[i] = w[i] * (x[i] * inv);
}

enum class Residual { overwrite, accumulate };

// y = x W^T + b (overwrite) or y += x W^T + b (accumulate: the residual add).
void linear(const MatrixRM& x, const MatrixRM& w, const VectorF& b, MatrixRM& y,
            Residual mode) {
  PTQ_ASSERT(x.cols() == w.cols());
  if (mode == Residual::overwrite) y.resize(x.rows(), w.rows());
  PTQ_ASSERT(y.rows() == x.rows() && y.cols() == w.rows());
  parallel_gemm(x, w, GemmOp::transposed, y,
                mode == Residual::accumulate ? GemmOutput::accumulate : GemmOutput::overwrite);
  if (b.size() > 0) y.rowwise() += b.transpose();
}

// Observes then transforms `input`; true when the forward should stop here
// (ForwardOptions::stop_after).
bool prepare_input(const ForwardOptions& o, int layer, LinearInput input, MatrixRM& x) {
  if (o.observer) o.observer->observe(layer, roles_reading(input), x);
  if (o.stop_after == input) return true;
  if (o.input_transform) o.input_transform->apply(layer, roles_reading(input), x);
  return false;
}

// Per-head RMSNorm (Qwen3) on a [tokens, heads*head_dim] matrix.
void head_norm(MatrixRM& x, const VectorF& w, int head_dim, float eps) {
  const int heads = static_cast<int>(x.cols()) / head_dim;
  for_rows(x.rows(), [&](Eigen::Index t) {
    for (int h = 0; h < heads; ++h)
      rms_norm(x.row(t).data() + h * head_dim, w.data(), head_dim, eps);
  });
}

// A mixture layer's inputs as LinearObserver::observe_expert describes them.
void observe_experts(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed,
                     LinearObserver& o) {
  const std::span<const LinearRole> gate_up = roles_reading(LinearInput::mlp_in);
  const std::span<const LinearRole> down = roles_reading(LinearInput::mlp_hidden);
  o.observe(w.layer, gate_up, normed);
  const Routing routing = route_tokens(c, w, normed);
  for (std::size_t e = 0; e < w.experts.size(); ++e) {
    const auto expert = static_cast<int>(e);
    const MatrixRM routed = gather_rows(normed, routing.tokens[e]);
    o.observe_expert(w.layer, expert, gate_up, ExpertTokens::routed, routed);
    o.observe_expert(w.layer, expert, down, ExpertTokens::routed,
                     expert_hidden(c, w.experts[e], routed));
    o.observe_expert(w.layer, expert, down, ExpertTokens::all,
                     expert_hidden(c, w.experts[e], normed));
  }
}

// A mixture layer's MLP sublayer: the router and its experts.
bool moe_sublayer(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed,
                  Activations& act, const ForwardOptions& o) {
  if (o.observer != nullptr && !o.observer->observes_experts())
    require_dense(c, "these statistics of layer " + std::to_string(w.layer));
  if (o.observer != nullptr) observe_experts(c, w, normed, *o.observer);
  if (o.stop_after == LinearInput::mlp_in || o.stop_after == LinearInput::mlp_hidden) return true;
  act.x += moe_output(c, w, normed, o.router_logits, o.input_transform);
  return false;
}

// One row of block_sublayers over act; true when the forward stopped early.
bool run_sublayer(const ModelConfig& c, const BlockWeights& w, const SublayerSpec& sublayer,
                  Activations& act, const ForwardOptions& o) {
  MatrixRM h = sublayer_normed(c, w, sublayer, act.x);
  if (sublayer.sublayer == Sublayer::mlp && c.is_moe(w.layer)) return moe_sublayer(c, w, h, act, o);
  if (prepare_input(o, w.layer, sublayer.in, h)) return true;
  MatrixRM inner = sublayer_inner(c, w, sublayer.sublayer, h, act.seq_len);
  if (prepare_input(o, w.layer, sublayer.inner, inner)) return true;
  add_sublayer_output(c, w, sublayer, inner, act.x);
  return false;
}

}  // namespace

void require_dense(const ModelConfig& c, const std::string& what) {
  if (!c.has_moe()) return;
  throw input_error(what + " of a " + c.model_type + " model",
                    "dense MLPs (ptq evaluates, calibrates and quantizes mixture-of-experts "
                    "models, but not with these statistics or transforms yet)",
                    std::to_string(c.moe.experts) + " experts per mixture layer");
}

ForwardOptions observing(LinearObserver* observer) {
  ForwardOptions o;
  o.observer = observer;
  return o;
}

ForwardOptions transforming(const LinearInputTransform* transform) {
  ForwardOptions o;
  o.input_transform = transform;
  return o;
}

VectorF& BlockWeights::norm(NormRole role) {
  switch (role) {
    case NormRole::input:
      return input_norm;
    case NormRole::post_attention:
      return post_attention_norm;
    case NormRole::q_head:
      return q_norm;
    case NormRole::k_head:
      return k_norm;
    case NormRole::attention_out:
      return attention_out_norm;
    case NormRole::mlp_out:
      return mlp_out_norm;
  }
  PTQ_ASSERT(false && "a NormRole");
  return input_norm;
}

const VectorF& BlockWeights::norm(NormRole role) const {
  return const_cast<BlockWeights*>(this)->norm(role);
}

MatrixRM& BlockWeights::weight(const LinearKey& key) {
  return key.expert >= 0 ? experts.at(static_cast<std::size_t>(key.expert)).weight(key.role)
                         : weight(key.role);
}

const MatrixRM& BlockWeights::weight(const LinearKey& key) const {
  return const_cast<BlockWeights*>(this)->weight(key);
}

std::size_t BlockWeights::float_count() const {
  std::size_t n = input_norm.size() + post_attention_norm.size() + q_norm.size() + k_norm.size() +
                  attention_out_norm.size() + mlp_out_norm.size();
  for (int i = 0; i < linear_role_count; ++i) n += linear[i].size() + bias[i].size();
  n += router.size();
  for (const ExpertWeights& e : experts) n += e.gate.size() + e.up.size() + e.down.size();
  return n;
}

std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, int seq_len) {
  const int half = head_dim / 2;
  std::vector<float> inv(half);
  // LongRoPE (HF _compute_longrope_parameters and its per-call update): the short
  // factors up to the original context, the long ones beyond it.
  const std::vector<double>& stretch =
      seq_len > rope.original_max_position_embeddings ? rope.long_factor : rope.short_factor;
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float base = std::pow(static_cast<float>(rope.theta), exponent);
    inv[i] = rope.type == RopeType::LongRope ? 1.0f / (static_cast<float>(stretch[i]) * base)
                                             : 1.0f / base;
    if (rope.type == RopeType::Linear) inv[i] /= static_cast<float>(rope.factor);
  }
  if (rope.type != RopeType::Llama3) return inv;
  // Llama 3 frequency scaling (HF _compute_llama3_parameters): long wavelengths
  // are divided by `factor`, short ones kept, and the band between blended.
  const double old_len = rope.original_max_position_embeddings;
  const double low_freq_wavelen = old_len / rope.low_freq_factor;
  const double high_freq_wavelen = old_len / rope.high_freq_factor;
  for (float& f : inv) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = static_cast<float>(f / rope.factor);
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_len / wavelen - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      f = static_cast<float>((1.0 - smooth) * f / rope.factor + smooth * f);
    }
  }
  return inv;
}

void apply_rope(MatrixRM& x, const MatrixRM& cos, const MatrixRM& sin, int seq_len, int head_dim) {
  const int half = head_dim / 2, heads = static_cast<int>(x.cols()) / head_dim;
  for_rows(x.rows(), [&](Eigen::Index t) {
    const float* c = cos.row(t % seq_len).data();
    const float* s = sin.row(t % seq_len).data();
    for (int h = 0; h < heads; ++h) {
      float* v = x.row(t).data() + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c[i] - x2 * s[i];
        v[i + half] = x2 * c[i] + x1 * s[i];
      }
    }
  });
}

void rope_tables(const RopeConfig& rope, int head_dim, int seq_len, MatrixRM& cos, MatrixRM& sin) {
  const std::vector<float> inv_freq = rope_inv_freq(rope, head_dim, seq_len);
  const int half = head_dim / 2;
  cos.resize(seq_len, half);
  sin.resize(seq_len, half);
  for (int p = 0; p < seq_len; ++p) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos(p, i) = std::cos(angle);
      sin(p, i) = std::sin(angle);
    }
  }
  if (rope.type == RopeType::LongRope) {
    const auto scale = static_cast<float>(rope.attention_factor);
    cos *= scale;
    sin *= scale;
  }
}

void rms_norm_rows(MatrixRM& x, const VectorF& w, float eps) {
  PTQ_ASSERT(w.size() == x.cols());
  const int n = static_cast<int>(x.cols());
  for_rows(x.rows(), [&](Eigen::Index t) { rms_norm(x.row(t).data(), w.data(), n, eps); });
}

void linear_forward(const MatrixRM& x, const MatrixRM& w, const VectorF& b, MatrixRM& y) {
  linear(x, w, b, y, Residual::overwrite);
}

void linear_accumulate(const MatrixRM& x, const MatrixRM& w, const VectorF& b, MatrixRM& y) {
  linear(x, w, b, y, Residual::accumulate);
}

MatrixRM attention_context(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed, int seq_len) {
  c.check_sequence_length(seq_len);
  MatrixRM q, k, v;
  linear(normed, w.weight(LinearRole::q), w.bias_of(LinearRole::q), q, Residual::overwrite);
  linear(normed, w.weight(LinearRole::k), w.bias_of(LinearRole::k), k, Residual::overwrite);
  linear(normed, w.weight(LinearRole::v), w.bias_of(LinearRole::v), v, Residual::overwrite);
  if (c.qk_norm) {
    head_norm(q, w.q_norm, c.head_dim, static_cast<float>(c.rms_norm_eps));
    head_norm(k, w.k_norm, c.head_dim, static_cast<float>(c.rms_norm_eps));
  }
  const bool sliding = c.sliding(w.layer);
  MatrixRM cos, sin;
  rope_tables(sliding ? c.local_rope : c.rope, c.head_dim, seq_len, cos, sin);
  apply_rope(q, cos, sin, seq_len, c.head_dim);
  apply_rope(k, cos, sin, seq_len, c.head_dim);
  AttentionShape shape{seq_len, c.num_heads, c.num_kv_heads, c.head_dim};
  shape.scale = static_cast<float>(c.query_scale);
  shape.softcap = static_cast<float>(c.attn_logit_softcap);
  shape.window = sliding ? c.sliding_window : 0;
  MatrixRM attended;
  causal_attention(q, k, v, shape, attended);
  return attended;
}

namespace {

// Each token's top experts_per_token experts and their weights, from the
// router's logits: softmax over all experts, the largest probabilities (the
// lower index first among equals), renormalized over them when the family
// does.
Routing route(const MoeConfig& m, const MatrixRM& logits) {
  Routing r;
  r.tokens.resize(static_cast<std::size_t>(m.experts));
  r.weights.resize(static_cast<std::size_t>(m.experts));
  std::vector<int> order(static_cast<std::size_t>(m.experts));
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    const Eigen::ArrayXf p = (logits.row(t).array() - logits.row(t).maxCoeff()).exp();
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + m.experts_per_token, order.end(),
                      [&](int a, int b) { return p(a) > p(b) || (p(a) == p(b) && a < b); });
    float chosen = 0;
    for (int k = 0; k < m.experts_per_token; ++k) chosen += p(order[k]);
    const float denominator = m.normalize_top_k ? chosen : p.sum();
    for (int k = 0; k < m.experts_per_token; ++k) {
      r.tokens[order[k]].push_back(t);
      r.weights[order[k]].push_back(p(order[k]) / denominator);
    }
  }
  return r;
}

}  // namespace

void gated_activation(const ModelConfig& c, MatrixRM& gate, const MatrixRM& up) {
  const bool silu = c.activation == Activation::silu;
  const float root_2_over_pi = std::sqrt(2.0f / std::numbers::pi_v<float>);
  for_rows(gate.rows(), [&](Eigen::Index t) {
    auto g = gate.row(t).array();
    if (silu) {
      g = g / (1.0f + (-g).exp()) * up.row(t).array();
    } else {  // torch's gelu(approximate="tanh")
      g = 0.5f * g * (1.0f + (root_2_over_pi * (g + 0.044715f * g.cube())).tanh()) *
          up.row(t).array();
    }
  });
}

MatrixRM mlp_hidden(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed) {
  MatrixRM gate, up;
  linear(normed, w.weight(LinearRole::gate), w.bias_of(LinearRole::gate), gate,
         Residual::overwrite);
  linear(normed, w.weight(LinearRole::up), w.bias_of(LinearRole::up), up, Residual::overwrite);
  gated_activation(c, gate, up);
  return gate;
}

MatrixRM& ExpertWeights::weight(LinearRole role) {
  PTQ_ASSERT(role == LinearRole::gate || role == LinearRole::up || role == LinearRole::down);
  return role == LinearRole::gate ? gate : role == LinearRole::up ? up : down;
}

Routing route_tokens(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed,
                     const RouterLogitsHook& hook) {
  MatrixRM logits;
  linear(normed, w.router, VectorF(), logits, Residual::overwrite);
  if (hook) hook(w.layer, logits);
  return route(c.moe, logits);
}

MatrixRM expert_hidden(const ModelConfig& c, const ExpertWeights& expert, const MatrixRM& x) {
  MatrixRM gate, up;
  linear(x, expert.gate, VectorF(), gate, Residual::overwrite);
  linear(x, expert.up, VectorF(), up, Residual::overwrite);
  gated_activation(c, gate, up);
  return gate;
}

MatrixRM gather_rows(const MatrixRM& x, std::span<const Eigen::Index> rows) {
  MatrixRM out(static_cast<Eigen::Index>(rows.size()), x.cols());
  for (std::size_t i = 0; i < rows.size(); ++i)
    out.row(static_cast<Eigen::Index>(i)) = x.row(rows[i]);
  return out;
}

MatrixRM moe_output(const ModelConfig& c, const BlockWeights& w, const MatrixRM& normed,
                    const RouterLogitsHook& hook, const LinearInputTransform* transform) {
  PTQ_ASSERT(static_cast<int>(w.experts.size()) == c.moe.experts);
  const Routing routing = route_tokens(c, w, normed, hook);
  MatrixRM out = MatrixRM::Zero(normed.rows(), normed.cols());
  for (std::size_t e = 0; e < w.experts.size(); ++e) {
    const auto& tokens = routing.tokens[e];
    if (tokens.empty()) continue;
    // A transform rounds each token's row on its own (or by one scale per
    // input), so the routed rows' rounding is that of the whole input's.
    MatrixRM in = gather_rows(normed, tokens);
    if (transform != nullptr) transform->apply(w.layer, roles_reading(LinearInput::mlp_in), in);
    MatrixRM hidden = expert_hidden(c, w.experts[e], in);
    if (transform != nullptr)
      transform->apply(w.layer, roles_reading(LinearInput::mlp_hidden), hidden);
    MatrixRM y;
    linear(hidden, w.experts[e].down, VectorF(), y, Residual::overwrite);
    for (std::size_t i = 0; i < tokens.size(); ++i)
      out.row(tokens[i]) += routing.weights[e][i] * y.row(static_cast<Eigen::Index>(i));
  }
  return out;
}

MatrixRM sublayer_inner(const ModelConfig& c, const BlockWeights& w, Sublayer sublayer,
                        const MatrixRM& normed, int seq_len) {
  return sublayer == Sublayer::attention ? attention_context(c, w, normed, seq_len)
                                         : mlp_hidden(c, w, normed);
}

MatrixRM sublayer_normed(const ModelConfig& c, const BlockWeights& w, const SublayerSpec& sublayer,
                         const MatrixRM& x) {
  MatrixRM h = x;
  rms_norm_rows(h, w.norm(sublayer.norm), static_cast<float>(c.rms_norm_eps));
  return h;
}

void add_sublayer_output(const ModelConfig& c, const BlockWeights& w, const SublayerSpec& sublayer,
                         const MatrixRM& in, MatrixRM& x) {
  const LinearRole role = sublayer.out;
  if (!c.sandwich_norms) {
    linear(in, w.weight(role), w.bias_of(role), x, Residual::accumulate);
    return;
  }
  MatrixRM y;
  linear(in, w.weight(role), w.bias_of(role), y, Residual::overwrite);
  rms_norm_rows(y, w.norm(sublayer.out_norm), static_cast<float>(c.rms_norm_eps));
  x += y;
}

void forward_windows(const ModelConfig& config, const BlockWeights& w, MatrixRM& x, const WindowWalk& walk,
                     LinearObserver* observer, StreamUpdate update,
                     const std::function<void(int first_window, int windows)>& on_batch) {
  PTQ_ASSERT(walk.seq_len > 0 && walk.batch_windows > 0 && x.rows() % walk.seq_len == 0);
  const auto n = static_cast<int>(x.rows() / walk.seq_len);
  for (int first = 0; first < n;) {
    int last = first + 1;
    while (last < n && last - first < walk.batch_windows && !(walk.splits_before && walk.splits_before(last))) ++last;
    if (on_batch) on_batch(first, last - first);
    const auto r0 = static_cast<Eigen::Index>(first) * walk.seq_len;
    const auto rows = static_cast<Eigen::Index>(last - first) * walk.seq_len;
    Activations act{x.middleRows(r0, rows), walk.seq_len};
    block_forward(config, w, act, observing(observer));
    if (update == StreamUpdate::advance) x.middleRows(r0, rows) = act.x;
    first = last;
  }
}

void block_forward(const ModelConfig& config, const BlockWeights& w, Activations& act,
                   const ForwardOptions& options) {
  PTQ_ASSERT(act.seq_len > 0 && act.x.rows() % act.seq_len == 0);
  PTQ_ASSERT(act.x.cols() == config.hidden_size);
  for (const SublayerSpec& sublayer : block_sublayers)
    if (run_sublayer(config, w, sublayer, act, options)) return;
}

}  // namespace ptq
