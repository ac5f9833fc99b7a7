#include "algorithms/smoothquant.hpp"

#include <cmath>
#include <string>

#include "io/error.hpp"

namespace ptq {

void SmoothQuantConfig::validate() const {
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw input_error("smoothquant.alpha", "a number in [0, 1]", std::to_string(alpha));
}

Eigen::VectorXf smoothing_scales(const Eigen::VectorXf& act_absmax, std::span<const MatrixRM* const> weights,
                                 const SmoothQuantConfig& config) {
  config.validate();
  PTQ_ASSERT(!weights.empty());
  Eigen::VectorXf w_absmax = Eigen::VectorXf::Zero(act_absmax.size());
  for (const MatrixRM* w : weights) {
    PTQ_ASSERT(w->cols() == act_absmax.size());
    w_absmax = w_absmax.cwiseMax(w->cwiseAbs().colwise().maxCoeff().transpose());
  }
  const auto alpha = static_cast<float>(config.alpha);
  Eigen::VectorXf s(act_absmax.size());
  for (Eigen::Index c = 0; c < s.size(); ++c) {
    const float w = std::max(w_absmax[c], kSmoothMinScale);
    s[c] = std::max(std::pow(act_absmax[c], alpha) / std::pow(w, 1.0f - alpha), kSmoothMinScale);
  }
  return s;
}

void fold_smoothing(const Eigen::VectorXf& s, Eigen::VectorXf& norm, std::span<MatrixRM* const> weights) {
  PTQ_ASSERT(norm.size() == s.size());
  norm.array() /= s.array();
  for (MatrixRM* w : weights) {
    PTQ_ASSERT(w->cols() == s.size());
    w->array().rowwise() *= s.transpose().array();
  }
}

}  // namespace ptq
