#include "pipeline/awq.hpp"

#include <array>
#include <memory>
#include <string>

#include "algorithms/smoothquant.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// The module whose output a scale search compares (llm-awq's module2inspect).
enum class Inspect { attention, mlp, scaled_linear };

// llm-awq auto_scale_block for Llama, in its order. v -> o applies only when
// v and o have the same shape (not with grouped-query attention).
struct ScaleSite {
  AwqPrevOp prev;
  std::span<const LinearRole> roles;
  LinearInput input;
  Inspect inspect;
};

constexpr std::array<LinearRole, 3> kQkv = {LinearRole::q, LinearRole::k, LinearRole::v};
constexpr std::array<LinearRole, 1> kO = {LinearRole::o};
constexpr std::array<LinearRole, 2> kGateUp = {LinearRole::gate, LinearRole::up};
constexpr std::array<LinearRole, 1> kDown = {LinearRole::down};

const std::array<ScaleSite, 4> kSites = {{
    {AwqPrevOp::input_norm, kQkv, LinearInput::attention_in, Inspect::attention},
    {AwqPrevOp::v, kO, LinearInput::attention_out, Inspect::scaled_linear},
    {AwqPrevOp::post_attention_norm, kGateUp, LinearInput::mlp_in, Inspect::mlp},
    {AwqPrevOp::up, kDown, LinearInput::mlp_hidden, Inspect::scaled_linear},
}};

// kSites is indexed by AwqPrevOp.
const ScaleSite& site_of(AwqPrevOp prev) {
  const ScaleSite& site = kSites[static_cast<std::size_t>(prev)];
  PTQ_ASSERT(site.prev == prev);
  return site;
}

bool site_applies(const ScaleSite& site, const BlockWeights& w) {
  if (site.prev != AwqPrevOp::v) return true;
  const RowMatrix& v = w.weight(LinearRole::v);
  const RowMatrix& o = w.weight(LinearRole::o);
  return v.rows() == o.rows() && v.cols() == o.cols();
}

constexpr std::size_t kInputs = 4;
std::size_t index_of(LinearInput input) { return static_cast<std::size_t>(input); }

// Copies every Linear input of the block into one [tokens, in] matrix per input.
class FeatureCache : public LinearObserver {
 public:
  std::array<RowMatrix, kInputs> features;
  Eigen::Index row0 = 0;  // first token of the batch being run

  void observe(int, std::span<const LinearRole> roles, const RowMatrix& x) override {
    RowMatrix& f = features[index_of(linear_spec(roles.front()).input)];
    f.middleRows(row0, x.rows()) = x;
  }
};

FeatureCache cache_features(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len, int batch) {
  FeatureCache cache;
  for (LinearRole role : {LinearRole::q, LinearRole::o, LinearRole::gate, LinearRole::down})
    cache.features[index_of(linear_spec(role).input)].resize(x.rows(), linear_in_features(config, role));
  forward_windows(config, w, x, {seq_len, batch, {}}, &cache, true,
                  [&](int first, int) { cache.row0 = static_cast<Eigen::Index>(first) * seq_len; });
  return cache;
}

RowMatrix module_output(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site, const RowMatrix& x,
                        int seq_len) {
  RowMatrix y;
  switch (site.inspect) {
    case Inspect::attention:
      linear_forward(attention_context(config, w, x, seq_len), w.weight(LinearRole::o), w.bias_of(LinearRole::o), y);
      break;
    case Inspect::mlp:
      linear_forward(swiglu_hidden(w, x), w.weight(LinearRole::down), w.bias_of(LinearRole::down), y);
      break;
    case Inspect::scaled_linear:
      linear_forward(x, w.weight(site.roles.front()), w.bias_of(site.roles.front()), y);
      break;
  }
  return y;
}

// Calls f(first row, module output) for x in batches of whole windows, in order.
template <class F>
void for_module_batches(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site, const RowMatrix& x,
                        int seq_len, int batch, F&& f) {
  const Eigen::Index rows_per_batch = static_cast<Eigen::Index>(batch) * seq_len;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += rows_per_batch) {
    const Eigen::Index rows = std::min(rows_per_batch, x.rows() - r0);
    f(r0, module_output(config, w, site, x.middleRows(r0, rows), seq_len));
  }
}

RowMatrix module_outputs(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site, const RowMatrix& x,
                         int seq_len, int batch) {
  RowMatrix out;
  for_module_batches(config, w, site, x, seq_len, batch, [&](Eigen::Index r0, const RowMatrix& y) {
    if (out.rows() == 0) out.resize(x.rows(), y.cols());
    out.middleRows(r0, y.rows()) = y;
  });
  return out;
}

// Mean squared difference to `reference`, summed batch by batch in a fixed order.
double module_error(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site, const RowMatrix& x,
                    int seq_len, int batch, const RowMatrix& reference) {
  double sum = 0.0;
  for_module_batches(config, w, site, x, seq_len, batch, [&](Eigen::Index r0, const RowMatrix& y) {
    sum += (reference.middleRows(r0, y.rows()) - y).cast<double>().squaredNorm();
  });
  return sum / static_cast<double>(reference.size());
}

// Rows of every k-th window, k = windows / wanted (all windows when wanted is 0 or too large).
RowMatrix strided_windows(const RowMatrix& x, int seq_len, int wanted) {
  const Eigen::Index windows = x.rows() / seq_len;
  if (wanted <= 0 || wanted >= windows) return x;
  const Eigen::Index stride = windows / wanted;
  RowMatrix out(static_cast<Eigen::Index>(wanted) * seq_len, x.cols());
  for (Eigen::Index i = 0; i < wanted; ++i) out.middleRows(i * seq_len, seq_len) = x.middleRows(i * stride * seq_len, seq_len);
  return out;
}

// A single Linear's output error is quadratic in its weight change D = W' - W:
// mean over tokens and outputs of (x Dᵀ)² = tr(D G Dᵀ) / (tokens · out) with G = XᵀX,
// so all tokens are covered at the cost of one Gram matrix.
AwqLossFn linear_loss(const RowMatrix& w, const RowMatrix& x, const QuantSpec& spec) {
  InputStats stats(static_cast<int>(x.cols()), StatsContent::hessian);
  stats.add(x);
  auto gram = std::make_shared<Eigen::MatrixXd>(stats.mean_xtx());
  return [gram, &w, spec](const VectorF& s) {
    const Eigen::MatrixXd d = (awq_scaled_fake_quant(w, s, spec) - w).cast<double>();
    return (d * *gram).cwiseProduct(d).sum() / static_cast<double>(w.rows());
  };
}

AwqScaleGroup search_site(const ModelConfig& config, const BlockWeights& w, const ScaleSite& site, const RowMatrix& x,
                          int seq_len, const AwqOptions& o) {
  AwqLossFn loss_of;
  RowMatrix subset, reference;
  if (site.inspect == Inspect::scaled_linear) {
    loss_of = linear_loss(w.weight(site.roles.front()), x, o.spec);
  } else {
    subset = strided_windows(x, seq_len, o.search_windows);
    reference = module_outputs(config, w, site, subset, seq_len, o.batch_windows);
    loss_of = [&](const VectorF& s) {
      BlockWeights candidate = w;
      for (LinearRole role : site.roles) candidate.weight(role) = awq_scaled_fake_quant(w.weight(role), s, o.spec);
      return module_error(config, candidate, site, subset, seq_len, o.batch_windows, reference);
    };
  }
  const AwqScaleSearch found = awq_search_scale(mean_abs_columns(x), o.scale, loss_of);
  return {site.prev, found.scales, found.ratio, found.loss};
}

void fold_scales(BlockWeights& w, const AwqScaleGroup& g) {
  std::vector<MatrixRM*> scaled;
  for (LinearRole role : awq_scaled_roles(g.prev)) scaled.push_back(&w.weight(role));
  if (g.prev == AwqPrevOp::input_norm || g.prev == AwqPrevOp::post_attention_norm) {
    // A norm in front: SmoothQuant's fold (algorithms/smoothquant.hpp).
    fold_smoothing(g.scales, g.prev == AwqPrevOp::input_norm ? w.input_norm : w.post_attention_norm, scaled);
    return;
  }
  const auto s = g.scales.array();
  const LinearRole prev = g.prev == AwqPrevOp::v ? LinearRole::v : LinearRole::up;
  // The last rows of the previous Linear feed the scaled inputs (llm-awq scale_fc_fc).
  w.weight(prev).bottomRows(s.size()).array().colwise() /= s;
  auto& bias = w.bias[static_cast<std::size_t>(prev)];
  if (bias.size() > 0) bias.tail(s.size()).array() /= s;
  for (MatrixRM* weight : scaled) weight->array().rowwise() *= s.transpose();
}

std::string block_path(int layer) { return "awq/layers/" + std::to_string(layer); }

}  // namespace

void AwqOptions::validate() const {
  spec.validate();
  scale.validate();
  clip.validate();
  if (search_windows < 0) throw input_error("AwqOptions.search_windows", ">= 0", std::to_string(search_windows));
  if (batch_windows < 1) throw input_error("AwqOptions.batch_windows", ">= 1", std::to_string(batch_windows));
}

std::span<const LinearRole> awq_scaled_roles(AwqPrevOp prev) { return site_of(prev).roles; }

std::string_view awq_prev_name(AwqPrevOp prev) {
  constexpr std::array<std::string_view, 4> names = {"input_norm", "v", "post_attention_norm", "up"};
  return names[static_cast<std::size_t>(prev)];
}

AwqBlock awq_search_block(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len,
                          const AwqOptions& options) {
  options.validate();
  FeatureCache cache = cache_features(config, w, x, seq_len, options.batch_windows);
  AwqBlock out{w.layer, {}, {}};
  for (const ScaleSite& site : kSites)
    if (site_applies(site, w))
      out.scales.push_back(search_site(config, w, site, cache.features[index_of(site.input)], seq_len, options));
  if (options.clip_mode == AwqClipMode::None) return out;

  BlockWeights scaled = w;
  std::array<MatrixRM, kInputs> samples;
  for (std::size_t i = 0; i < kInputs; ++i) samples[i] = awq_sample_rows(cache.features[i], options.clip.sample_tokens);
  for (const AwqScaleGroup& g : out.scales) {
    fold_scales(scaled, g);
    samples[index_of(site_of(g.prev).input)].array().rowwise() /= g.scales.transpose().array();
  }
  // q and k are not clipped: their error passes through the q·k product (auto_clip_block).
  for (LinearRole role : {LinearRole::v, LinearRole::o, LinearRole::gate, LinearRole::up, LinearRole::down}) {
    const MatrixRM& X = samples[index_of(linear_spec(role).input)];
    out.clips.push_back({role, awq_search_clip(scaled.weight(role), X, options.spec, options.clip)});
  }
  return out;
}

void awq_apply_block(BlockWeights& w, const AwqBlock& awq, const QuantSpec& spec) {
  for (const AwqScaleGroup& g : awq.scales) fold_scales(w, g);
  for (const AwqClip& c : awq.clips) awq_apply_clip(w.weight(c.role), c.max_val, spec);
}

std::vector<FoldedNorm> awq_folded_norms(const Model& model, std::span<const AwqBlock> blocks) {
  std::vector<FoldedNorm> out;
  for (const AwqBlock& awq : blocks) {
    const BlockWeights w = model.load_block(awq.layer);
    for (const AwqScaleGroup& g : awq.scales) {
      if (g.prev == AwqPrevOp::input_norm)
        out.push_back({block_tensor_name(awq.layer, norm_specs[0].name), w.input_norm.array() / g.scales.array()});
      if (g.prev == AwqPrevOp::post_attention_norm)
        out.push_back({block_tensor_name(awq.layer, norm_specs[1].name),
                       w.post_attention_norm.array() / g.scales.array()});
    }
  }
  return out;
}

void write_awq_block(H5Writer& out, const AwqBlock& awq) {
  const std::string p = block_path(awq.layer);
  for (const AwqScaleGroup& g : awq.scales) {
    const std::string d = p + "/scales/" + std::string(awq_prev_name(g.prev));
    out.write<float>(d, std::span(g.scales.data(), g.scales.size()), {g.scales.size()});
    std::string roles;
    for (LinearRole r : awq_scaled_roles(g.prev)) {
      if (!roles.empty()) roles += ',';
      roles += linear_role_name(r);
    }
    out.set_attribute(d, "roles", roles);
    out.set_attribute(d, "ratio", double{g.ratio});
    out.set_attribute(d, "loss", g.loss);
  }
  for (const AwqClip& c : awq.clips) {
    const std::string d = p + "/clip/" + std::string(linear_role_name(c.role));
    out.write<float>(d, std::span(c.max_val.data(), c.max_val.size()), {c.max_val.rows(), c.max_val.cols()});
  }
}

AwqBlock read_awq_block(const H5Reader& in, int layer, const ModelConfig& config, const QuantSpec& spec) {
  const std::string p = block_path(layer);
  const std::string where = in.path().string() + ": " + p;
  if (!in.has(p)) throw input_error(where, "AWQ scales of layer " + std::to_string(layer), "no such group");
  AwqBlock out{layer, {}, {}};
  for (const ScaleSite& site : kSites) {
    const std::string d = p + "/scales/" + std::string(awq_prev_name(site.prev));
    if (!in.has(d)) continue;
    const auto values = in.read<float>(d);
    const int in_features = linear_in_features(config, site.roles.front());
    if (static_cast<int>(values.size()) != in_features)
      throw input_error(in.path().string() + ": " + d, std::to_string(in_features) + " scales",
                        std::to_string(values.size()));
    AwqScaleGroup g{site.prev, Eigen::Map<const VectorF>(values.data(), in_features), 0.0f, 0.0};
    g.ratio = static_cast<float>(in.float_attribute(d, "ratio"));
    g.loss = in.float_attribute(d, "loss");
    out.scales.push_back(std::move(g));
  }
  for (LinearRole role : all_linear_roles) {
    const std::string d = p + "/clip/" + std::string(linear_role_name(role));
    if (!in.has(d)) continue;
    const auto shape = in.shape(d);
    const int cols = linear_in_features(config, role);
    const std::vector<std::int64_t> want = {linear_out_features(config, role), spec.groups_per_row(cols)};
    if (shape != want)
      throw input_error(in.path().string() + ": " + d,
                        "clip bounds [" + std::to_string(want[0]) + ", " + std::to_string(want[1]) + "] (same group size)",
                        shape.size() == 2 ? "[" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]"
                                          : "another rank");
    const auto values = in.read<float>(d);
    out.clips.push_back({role, Eigen::Map<const MatrixRM>(values.data(), want[0], want[1])});
  }
  return out;
}

}  // namespace ptq
