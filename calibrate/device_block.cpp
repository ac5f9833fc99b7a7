#include "calibrate/device_block.hpp"

namespace ptq {

namespace {

DeviceMatrix upload_vector(DeviceOps& ops, const VectorF& v) {
  if (v.size() == 0) return {};
  return ops.upload(Eigen::Map<const MatrixRM>(v.data(), 1, v.size()));
}

}  // namespace

std::string DeviceBlock::unsupported(const ModelConfig& c, int layer) {
  if (c.is_moe(layer)) return "mixture-of-experts layers";
  if (c.sandwich_norms) return "the output norms of Gemma's sublayers";
  if (c.attn_logit_softcap > 0) return "attention soft-capping";
  if (c.sliding(layer)) return "sliding-window attention";
  return "";
}

DeviceBlock::DeviceBlock(DeviceOps& ops, const ModelConfig& config, const BlockWeights& w,
                         int seq_len)
    : ops_(ops), c_(config), seq_len_(seq_len) {
  PTQ_ASSERT(unsupported(config, w.layer).empty());
  for (std::size_t r = 0; r < weight_.size(); ++r) {
    weight_[r] = ops.upload(w.linear[r]);
    bias_[r] = upload_vector(ops, w.bias[r]);
  }
  input_norm_ = upload_vector(ops, w.input_norm);
  post_attention_norm_ = upload_vector(ops, w.post_attention_norm);
  q_norm_ = upload_vector(ops, w.q_norm);
  k_norm_ = upload_vector(ops, w.k_norm);
  MatrixRM cos, sin;
  rope_tables(config.rope, config.head_dim, seq_len, cos, sin);
  cos_ = ops.upload(cos);
  sin_ = ops.upload(sin);
}

DeviceMatrix DeviceBlock::normed(const SublayerSpec& sublayer, const DeviceMatrix& x) const {
  DeviceMatrix h = ops_.allocate(x.rows(), x.cols());
  const DeviceMatrix& w = sublayer.norm == NormRole::input ? input_norm_ : post_attention_norm_;
  ops_.rms_norm(x, w, static_cast<float>(c_.rms_norm_eps), h);
  return h;
}

DeviceMatrix DeviceBlock::project(const DeviceMatrix& x, LinearRole role) const {
  const auto r = static_cast<std::size_t>(role);
  DeviceMatrix y = ops_.allocate(x.rows(), weight_[r].rows());
  ops_.linear(x, weight_[r], bias_[r], y, GemmOutput::overwrite);
  return y;
}

DeviceMatrix DeviceBlock::attention(const DeviceMatrix& normed) const {
  DeviceMatrix q = project(normed, LinearRole::q), k = project(normed, LinearRole::k);
  const DeviceMatrix v = project(normed, LinearRole::v);
  const int d = c_.head_dim;
  const auto eps = static_cast<float>(c_.rms_norm_eps);
  if (c_.qk_norm) {  // per head: rows of head_dim
    DeviceMatrix qh = q.reshaped(q.size() / d, d), kh = k.reshaped(k.size() / d, d);
    ops_.rms_norm(qh, q_norm_, eps, qh);
    ops_.rms_norm(kh, k_norm_, eps, kh);
  }
  ops_.rope(q, cos_, sin_, d);
  ops_.rope(k, cos_, sin_, d);
  AttentionShape shape{seq_len_, c_.num_heads, c_.num_kv_heads, d};
  shape.scale = static_cast<float>(c_.query_scale);
  DeviceMatrix out = ops_.allocate(q.rows(), q.cols());
  ops_.causal_attention(q, k, v, shape, out);
  return out;
}

DeviceMatrix DeviceBlock::mlp(const DeviceMatrix& normed) const {
  DeviceMatrix gate = project(normed, LinearRole::gate);
  ops_.gated_activation(gate, project(normed, LinearRole::up), c_.activation == Activation::silu);
  return gate;
}

DeviceMatrix DeviceBlock::inner(Sublayer sublayer, const DeviceMatrix& normed) const {
  return sublayer == Sublayer::attention ? attention(normed) : mlp(normed);
}

void DeviceBlock::add_output(const SublayerSpec& sublayer, const DeviceMatrix& in,
                             DeviceMatrix& x) const {
  const auto r = static_cast<std::size_t>(sublayer.out);
  ops_.linear(in, weight_[r], bias_[r], x, GemmOutput::accumulate);
}

}  // namespace ptq
