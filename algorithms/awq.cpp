#include "algorithms/awq.hpp"

#include <tbb/parallel_for.h>

#include <cmath>
#include <limits>
#include <string>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

constexpr float kMinScale = 1e-4f;  // auto_scale.py clamp(min=1e-4)

int group_width(const QuantSpec& spec, Eigen::Index columns) {
  return spec.granularity == Granularity::Group ? spec.group_size : static_cast<int>(columns);
}

// Q(clamp(w, -m, m)) of one row segment, on the grid of its clamped range.
void clamp_and_quantize(const Eigen::Ref<const Eigen::RowVectorXf>& w, float m, const QuantSpec& spec,
                        Eigen::Ref<Eigen::RowVectorXf> q) {
  q = w.array().max(-m).min(m);
  const GridParams<float> grid = grid_for_spec<float>(q.minCoeff(), q.maxCoeff(), spec);
  const int maxq = spec.maxq();
  for (Eigen::Index c = 0; c < q.size(); ++c) q[c] = dequantize_code(quantize_code(q[c], grid, maxq), grid);
}

// One group's clip search: columns [begin, begin + width) of every row.
void search_group_clip(const MatrixRM& W, const MatrixRM& X, const QuantSpec& spec, const AwqClipConfig& config,
                       Eigen::Index begin, int width, Eigen::Ref<Eigen::VectorXf> best) {
  const MatrixRM w = W.middleCols(begin, width);
  const MatrixRM x = X.middleCols(begin, width);
  const MatrixRM org = x * w.transpose();  // [tokens, out]
  const Eigen::VectorXf absmax = w.cwiseAbs().rowwise().maxCoeff();
  best = absmax;
  Eigen::VectorXd min_err = Eigen::VectorXd::Constant(w.rows(), std::numeric_limits<double>::infinity());
  MatrixRM q(w.rows(), width);
  const int steps = static_cast<int>(config.max_shrink * config.n_grid);
  for (int i = 0; i < steps; ++i) {
    const Eigen::VectorXf m = absmax * (1.0f - static_cast<float>(i) / static_cast<float>(config.n_grid));
    for (Eigen::Index r = 0; r < w.rows(); ++r) clamp_and_quantize(w.row(r), m[r], spec, q.row(r));
    const MatrixRM diff = x * q.transpose() - org;
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      const double err = diff.col(r).cast<double>().squaredNorm() / static_cast<double>(x.rows());
      if (err < min_err[r]) {
        min_err[r] = err;
        best[r] = m[r];
      }
    }
  }
}

}  // namespace

void AwqScaleConfig::validate() const {
  if (n_grid < 1) throw input_error("AwqScaleConfig.n_grid", ">= 1", std::to_string(n_grid));
}

void AwqClipConfig::validate() const {
  if (n_grid < 1) throw input_error("AwqClipConfig.n_grid", ">= 1", std::to_string(n_grid));
  if (!(max_shrink > 0.0 && max_shrink < 1.0))
    throw input_error("AwqClipConfig.max_shrink", "in (0, 1)", std::to_string(max_shrink));
  if (sample_tokens < 1) throw input_error("AwqClipConfig.sample_tokens", ">= 1", std::to_string(sample_tokens));
}

VectorF mean_abs_columns(const MatrixRM& X) {
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(X.cols());
  for (Eigen::Index t = 0; t < X.rows(); ++t) sum += X.row(t).transpose().cast<double>().cwiseAbs();
  return (sum / static_cast<double>(std::max<Eigen::Index>(X.rows(), 1))).cast<float>();
}

VectorF awq_candidate_scales(const VectorF& act_scale, float ratio) {
  VectorF s = act_scale.array().pow(ratio).max(kMinScale);
  return s / std::sqrt(s.maxCoeff() * s.minCoeff());
}

MatrixRM awq_scaled_fake_quant(const MatrixRM& W, const VectorF& s, const QuantSpec& spec) {
  PTQ_ASSERT(s.size() == W.cols());
  const MatrixRM scaled = W.array().rowwise() * s.transpose().array();
  return rtn_quantize(scaled, spec).dequantize().array().rowwise() / s.transpose().array();
}

AwqScaleSearch awq_search_scale(const VectorF& act_scale, const AwqScaleConfig& config, const AwqLossFn& loss_of) {
  config.validate();
  AwqScaleSearch best;
  best.loss = std::numeric_limits<double>::infinity();
  for (int i = 0; i < config.n_grid; ++i) {
    const float ratio = static_cast<float>(i) / static_cast<float>(config.n_grid);
    VectorF s = awq_candidate_scales(act_scale, ratio);
    const double loss = loss_of(s);
    best.losses.push_back(loss);
    if (loss < best.loss) {
      best.loss = loss;
      best.ratio = ratio;
      best.scales = std::move(s);
    }
  }
  if (best.scales.size() == 0)
    throw input_error("awq_search_scale", "a finite output error for some ratio", "none (NaN or inf activations?)");
  return best;
}

MatrixRM awq_sample_rows(const MatrixRM& X, int sample_tokens) {
  const Eigen::Index stride = std::max<Eigen::Index>(1, X.rows() / sample_tokens);
  const Eigen::Index count = (X.rows() + stride - 1) / stride;
  MatrixRM out(count, X.cols());
  for (Eigen::Index i = 0; i < count; ++i) out.row(i) = X.row(i * stride);
  return out;
}

MatrixRM awq_search_clip(const MatrixRM& W, const MatrixRM& X, const QuantSpec& spec, const AwqClipConfig& config) {
  spec.validate();
  config.validate();
  require_weights(W, "awq_search_clip: W");
  PTQ_ASSERT(X.cols() == W.cols());
  const int width = group_width(spec, W.cols());
  const int groups = spec.groups_per_row(static_cast<int>(W.cols()));
  Eigen::MatrixXf best(W.rows(), groups);  // column-major: one column per group
  tbb::parallel_for(0, groups, [&](int g) {
    const Eigen::Index begin = static_cast<Eigen::Index>(g) * width;
    const int w = static_cast<int>(std::min<Eigen::Index>(width, W.cols() - begin));
    search_group_clip(W, X, spec, config, begin, w, best.col(g));
  });
  return best;
}

void awq_apply_clip(MatrixRM& W, const MatrixRM& max_val, const QuantSpec& spec) {
  const int width = group_width(spec, W.cols());
  PTQ_ASSERT(max_val.rows() == W.rows() && max_val.cols() == spec.groups_per_row(static_cast<int>(W.cols())));
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index g = 0; g < max_val.cols(); ++g) {
      const Eigen::Index begin = g * width;
      auto part = W.row(r).segment(begin, std::min<Eigen::Index>(width, W.cols() - begin));
      const float m = max_val(r, g);
      part = part.array().max(-m).min(m);
    }
}

}  // namespace ptq
