#include "pipeline/quantize/awq.hpp"

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/quantize/smoothing.hpp"

namespace ptq {

namespace {

// llm-awq auto_scale_block for Llama, in its order. A scale before a
// sublayer's first Linears is searched on the whole sublayer's output (its
// module2inspect: the attention, the MLP); one before the out Linear on that
// Linear's output alone. v -> o applies only when v and o have the same shape
// (not with grouped-query attention).
struct ScaleSite {
  FoldSite site;
  std::optional<Sublayer> inspect;  // none: the scaled Linear's own output
  std::span<const LinearRole> roles() const { return scaled_roles(site); }
  LinearInput input() const { return scaled_input(site); }
};

constexpr std::array<ScaleSite, 4> kSites = {{
    {FoldSite::input_norm, Sublayer::attention},
    {FoldSite::v, std::nullopt},
    {FoldSite::post_attention_norm, Sublayer::mlp},
    {FoldSite::up, std::nullopt},
}};

bool site_applies(const ScaleSite& site, const BlockWeights& w) {
  if (site.site != FoldSite::v) return true;
  const MatrixRM& v = w.weight(LinearRole::v);
  const MatrixRM& o = w.weight(LinearRole::o);
  return v.rows() == o.rows() && v.cols() == o.cols();
}

constexpr std::size_t kInputs = all_linear_inputs.size();
std::size_t index_of(LinearInput input) { return static_cast<std::size_t>(input); }

// Copies every Linear input of the block into one [tokens, in] matrix per input;
// in a mixture layer (which has no dense mlp_hidden) also each expert's gate/up
// and down inputs over the tokens routed to it, batch by batch.
class FeatureCache : public LinearObserver {
 public:
  std::array<MatrixRM, kInputs> features;
  Eigen::Index row0 = 0;  // first token of the batch being run
  std::vector<std::vector<MatrixRM>> expert_in, expert_hidden;  // [expert][batch]

  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    MatrixRM& f = features[index_of(linear_spec(roles.front()).input)];
    f.middleRows(row0, x.rows()) = x;
  }
  bool observes_experts() const override { return true; }
  void observe_expert(int, int expert, std::span<const LinearRole> roles, ExpertTokens tokens,
                      const MatrixRM& x) override {
    if (tokens != ExpertTokens::routed) return;
    auto& parts =
        linear_spec(roles.front()).input == LinearInput::mlp_in ? expert_in : expert_hidden;
    parts[static_cast<std::size_t>(expert)].push_back(x);
  }
};

// The batches' rows one under another.
MatrixRM stacked(const std::vector<MatrixRM>& parts, Eigen::Index cols) {
  Eigen::Index rows = 0;
  for (const MatrixRM& p : parts) rows += p.rows();
  MatrixRM out(rows, cols);
  rows = 0;
  for (const MatrixRM& p : parts) {
    out.middleRows(rows, p.rows()) = p;
    rows += p.rows();
  }
  return out;
}

FeatureCache cache_features(const ModelConfig& config, const BlockWeights& w, MatrixRM& x,
                            int seq_len, int batch) {
  FeatureCache cache;
  const bool moe = config.is_moe(w.layer);
  for (LinearInput input : all_linear_inputs)
    if (!moe || input != LinearInput::mlp_hidden)
      cache.features[index_of(input)].resize(x.rows(), input_features(config, input));
  cache.expert_in.resize(w.experts.size());
  cache.expert_hidden.resize(w.experts.size());
  forward_windows(config, w, x, {seq_len, batch, {}}, &cache, StreamUpdate::advance,
                  [&](int first, int) { cache.row0 = static_cast<Eigen::Index>(first) * seq_len; });
  return cache;
}

MatrixRM module_output(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site,
                       const MatrixRM& x, int seq_len) {
  MatrixRM y;
  if (!site.inspect) {
    const LinearRole scaled = site.roles().front();
    linear_forward(x, w.weight(scaled), w.bias_of(scaled), y);
    return y;
  }
  if (*site.inspect == Sublayer::mlp && config.is_moe(w.layer)) return moe_output(config, w, x);
  const LinearRole out = sublayer_spec(*site.inspect).out;
  linear_forward(sublayer_inner(config, w, *site.inspect, x, seq_len), w.weight(out),
                 w.bias_of(out), y);
  return y;
}

// Calls f(first row, module output) for x in batches of whole windows, in order.
template <class F>
void for_module_batches(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site,
                        const MatrixRM& x, int seq_len, int batch, F&& f) {
  const Eigen::Index rows_per_batch = static_cast<Eigen::Index>(batch) * seq_len;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += rows_per_batch) {
    const Eigen::Index rows = std::min(rows_per_batch, x.rows() - r0);
    f(r0, module_output(config, w, site, x.middleRows(r0, rows), seq_len));
  }
}

MatrixRM module_outputs(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site,
                        const MatrixRM& x, int seq_len, int batch) {
  MatrixRM out;
  for_module_batches(config, w, site, x, seq_len, batch, [&](Eigen::Index r0, const MatrixRM& y) {
    if (out.rows() == 0) out.resize(x.rows(), y.cols());
    out.middleRows(r0, y.rows()) = y;
  });
  return out;
}

// Mean squared difference to `reference`, summed batch by batch in a fixed order.
double module_error(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site,
                    const MatrixRM& x, int seq_len, int batch, const MatrixRM& reference) {
  double sum = 0.0;
  for_module_batches(config, w, site, x, seq_len, batch, [&](Eigen::Index r0, const MatrixRM& y) {
    sum += (reference.middleRows(r0, y.rows()) - y).cast<double>().squaredNorm();
  });
  return sum / static_cast<double>(reference.size());
}

// Rows of every k-th window, k = windows / wanted (all windows when wanted is 0 or too large).
MatrixRM strided_windows(const MatrixRM& x, int seq_len, int wanted) {
  const Eigen::Index windows = x.rows() / seq_len;
  if (wanted <= 0 || wanted >= windows) return x;
  const Eigen::Index stride = windows / wanted;
  MatrixRM out(static_cast<Eigen::Index>(wanted) * seq_len, x.cols());
  for (Eigen::Index i = 0; i < wanted; ++i)
    out.middleRows(i * seq_len, seq_len) = x.middleRows(i * stride * seq_len, seq_len);
  return out;
}

// A single Linear's output error is quadratic in its weight change D = W' - W:
// mean over tokens and outputs of (x Dᵀ)² = tr(D G Dᵀ) / (tokens · out) with G = XᵀX,
// so all tokens are covered at the cost of one Gram matrix.
AwqLossFn linear_loss(const MatrixRM& w, const MatrixRM& x, const QuantSpec& spec) {
  InputStats stats(static_cast<int>(x.cols()), StatsContent::hessian);
  stats.add(x);
  auto gram = std::make_shared<Eigen::MatrixXd>(stats.mean_xtx());
  return [gram, &w, spec](const VectorF& s) {
    const Eigen::MatrixXd d = (awq_scaled_fake_quant(w, s, spec) - w).cast<double>();
    return (d * *gram).cwiseProduct(d).sum() / static_cast<double>(w.rows());
  };
}

ScaleGroup search_site(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site,
                       const MatrixRM& x, int seq_len, const AwqOptions& o) {
  AwqLossFn loss_of;
  MatrixRM subset, reference;
  if (!site.inspect) {
    loss_of = linear_loss(w.weight(site.roles().front()), x, o.spec);
  } else {
    subset = strided_windows(x, seq_len, o.search_windows);
    reference = module_outputs(config, w, site, subset, seq_len, o.batch_windows);
    loss_of = [&](const VectorF& s) {
      BlockWeights candidate = w;
      for (MatrixRM* m : scaled_weights(candidate, site.site, -1))
        if (m != &candidate.router)
          *m = awq_scaled_fake_quant(*m, s, o.spec);  // routers stay float
      return module_error(config, candidate, site, subset, seq_len, o.batch_windows, reference);
    };
  }
  const AwqScaleSearch found = awq_search_scale(mean_abs_columns(x), o.scale, loss_of);
  return {site.site, found.scales, found.ratio, found.loss};
}

}  // namespace

AwqOptions awq_options(const Recipe& recipe, int batch_windows) {
  AwqOptions o;
  o.spec = recipe.awq_spec();
  o.clip_mode = recipe.awq_clip;
  o.search_windows = recipe.awq_search_windows;
  o.batch_windows = batch_windows;
  return o;
}

void AwqOptions::validate() const {
  spec.validate();
  scale.validate();
  clip.validate();
  if (search_windows < 0)
    throw input_error("AwqOptions.search_windows", ">= 0", std::to_string(search_windows));
  if (batch_windows < 1)
    throw input_error("AwqOptions.batch_windows", ">= 1", std::to_string(batch_windows));
}

namespace {

// A mixture layer's experts: each expert's up -> down scale, searched on its
// down's output over the tokens routed to it (an expert routed none keeps its
// weights unscaled and unclipped).
void search_expert_scales(const BlockWeights& w, const std::vector<MatrixRM>& hidden,
                          const AwqOptions& o, BlockScales& out) {
  for (std::size_t e = 0; e < w.experts.size(); ++e) {
    if (hidden[e].rows() == 0) continue;
    const AwqScaleSearch found = awq_search_scale(
        mean_abs_columns(hidden[e]), o.scale, linear_loss(w.experts[e].down, hidden[e], o.spec));
    out.scales.push_back(
        {FoldSite::up, found.scales, found.ratio, found.loss, static_cast<int>(e)});
  }
}

// Each routed expert's gate, up and down clipped on its own routed inputs, as
// the folded scales leave them.
void search_expert_clips(BlockWeights& scaled, const std::vector<MatrixRM>& in,
                         const std::vector<MatrixRM>& hidden, const AwqOptions& o,
                         BlockScales& out) {
  const auto scales_of = [&](FoldSite site, int expert) -> const VectorF* {
    for (const ScaleGroup& g : out.scales)
      if (g.site == site && g.expert == expert) return &g.scales;
    return nullptr;
  };
  for (std::size_t e = 0; e < scaled.experts.size(); ++e) {
    if (in[e].rows() == 0) continue;
    const auto expert = static_cast<int>(e);
    MatrixRM x = awq_sample_rows(in[e], o.clip.sample_tokens);
    MatrixRM h = awq_sample_rows(hidden[e], o.clip.sample_tokens);
    if (const VectorF* s = scales_of(FoldSite::post_attention_norm, -1))
      x.array().rowwise() /= s->transpose().array();
    if (const VectorF* s = scales_of(FoldSite::up, expert))
      h.array().rowwise() /= s->transpose().array();
    for (LinearRole role : expert_roles) {
      const MatrixRM& m = scaled.experts[e].weight(role);
      out.clips.push_back(
          {role, awq_search_clip(m, role == LinearRole::down ? h : x, o.spec, o.clip), expert});
    }
  }
}

}  // namespace

BlockScales awq_search_block(const ModelConfig& config, const BlockWeights& w, MatrixRM& x,
                             int seq_len, const AwqOptions& options) {
  options.validate();
  FeatureCache cache = cache_features(config, w, x, seq_len, options.batch_windows);
  const bool moe = config.is_moe(w.layer);
  BlockScales out{w.layer, {}, {}};
  for (const ScaleSite& site : kSites)
    if (site_applies(site, w) && !(moe && site.site == FoldSite::up))
      out.scales.push_back(
          search_site(config, w, site, cache.features[index_of(site.input())], seq_len, options));
  std::vector<MatrixRM> expert_in, expert_hidden;
  for (std::size_t e = 0; e < w.experts.size(); ++e) {
    expert_in.push_back(stacked(cache.expert_in[e], config.hidden_size));
    expert_hidden.push_back(stacked(cache.expert_hidden[e], config.moe.intermediate_size));
  }
  if (moe) search_expert_scales(w, expert_hidden, options, out);
  if (options.clip_mode == AwqClipMode::None) return out;

  BlockWeights scaled = w;
  std::array<MatrixRM, kInputs> samples;
  for (std::size_t i = 0; i < kInputs; ++i)
    samples[i] = awq_sample_rows(cache.features[i], options.clip.sample_tokens);
  for (const ScaleGroup& g : out.scales) {
    fold_scale_group(scaled, g);
    if (g.expert < 0)
      samples[index_of(scaled_input(g.site))].array().rowwise() /= g.scales.transpose().array();
  }
  // q and k are not clipped: their error passes through the q·k product (auto_clip_block).
  for (LinearRole role :
       {LinearRole::v, LinearRole::o, LinearRole::gate, LinearRole::up, LinearRole::down}) {
    if (moe && !(role == LinearRole::v || role == LinearRole::o)) continue;
    const MatrixRM& X = samples[index_of(linear_spec(role).input)];
    out.clips.push_back(
        {role, awq_search_clip(scaled.weight(role), X, options.spec, options.clip)});
  }
  if (moe) search_expert_clips(scaled, expert_in, expert_hidden, options, out);
  return out;
}

}  // namespace ptq
