#include "calibrate/logprobs.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "io/error.hpp"

namespace ptq {
namespace {

// log sum_v exp(row[v]), shifted by the maximum. The exponentials are float,
// by Eigen's packet exp over blocks of the row (a scalar std::exp loop over
// the vocabulary was 5 % of `ptq eval`'s time; a cast to double inside the
// same expression makes Eigen fall back to it); the sum is double.
double log_sum_exp(std::span<const float> row) {
  const Eigen::Map<const Eigen::ArrayXf> x(row.data(), static_cast<Eigen::Index>(row.size()));
  const float peak = x.maxCoeff();
  constexpr Eigen::Index block = 512;
  Eigen::Array<float, block, 1> e;
  Eigen::Array<double, block, 1> d;  // summed by Eigen's packet adds
  double sum = 0.0;
  for (Eigen::Index i = 0; i < x.size(); i += block) {
    const Eigen::Index n = std::min(block, x.size() - i);
    e.head(n) = (x.segment(i, n) - peak).exp();
    d.head(n) = e.head(n).cast<double>();
    sum += d.head(n).sum();
  }
  return double(peak) + std::log(sum);
}

}  // namespace

double token_logprob(std::span<const float> row, std::int32_t token) {
  PTQ_ASSERT(token >= 0 && static_cast<std::size_t>(token) < row.size());
  return double(row[static_cast<std::size_t>(token)]) - log_sum_exp(row);
}

double kl_divergence(std::span<const float> p_row, std::span<const float> q_row) {
  PTQ_ASSERT(p_row.size() == q_row.size() && !p_row.empty());
  const double p_norm = log_sum_exp(p_row);
  // log p(v) - log q(v) = (p_v - q_v) - (p_norm - q_norm): the logit difference
  // is taken first, so small divergences keep their digits.
  const double shift = p_norm - log_sum_exp(q_row);
  const float p_shift = static_cast<float>(p_norm);
  double kl = 0.0;
  for (std::size_t v = 0; v < p_row.size(); ++v) {
    const double p = std::exp(p_row[v] - p_shift);
    kl += p * (double(p_row[v] - q_row[v]) - shift);
  }
  return kl;
}

std::int32_t argmax(std::span<const float> row) {
  PTQ_ASSERT(!row.empty());
  return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace ptq
