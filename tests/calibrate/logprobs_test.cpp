// token_logprob and kl_divergence against double-precision scalar references,
// on rows that end inside a block of log_sum_exp and span several blocks.
#include "calibrate/logprobs.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace ptq {
namespace {

// float exponentials (Eigen's, within a few ulps of exp) summed in double:
// relative error of the sum ~1e-7, so ~1e-7 nats on a log-probability.
constexpr double kLogprobTolerance = 1e-6;

std::vector<float> random_logits(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> logit(0.0f, 4.0f);
  std::vector<float> row(n);
  for (float& v : row) v = logit(rng);
  return row;
}

double log_sum_exp_reference(const std::vector<float>& row) {
  double peak = row[0], sum = 0.0;
  for (float v : row) peak = std::max(peak, double(v));
  for (float v : row) sum += std::exp(double(v) - peak);
  return peak + std::log(sum);
}

TEST(Logprobs, TokenLogprobMatchesDoubleReference) {
  std::mt19937 rng(11);
  for (std::size_t vocab : {1u, 7u, 1000u, 8192u, 32000u}) {
    const std::vector<float> row = random_logits(vocab, rng);
    const double lse = log_sum_exp_reference(row);
    for (std::size_t token : {std::size_t{0}, vocab / 2, vocab - 1}) {
      EXPECT_NEAR(token_logprob(row, static_cast<std::int32_t>(token)), double(row[token]) - lse,
                  kLogprobTolerance)
          << "vocab " << vocab << " token " << token;
    }
  }
}

TEST(Logprobs, KlDivergenceMatchesDoubleReference) {
  std::mt19937 rng(12);
  const std::vector<float> p = random_logits(1000, rng), q = random_logits(1000, rng);
  const double p_norm = log_sum_exp_reference(p), q_norm = log_sum_exp_reference(q);
  double kl = 0.0;
  for (std::size_t v = 0; v < p.size(); ++v) {
    const double log_p = p[v] - p_norm, log_q = q[v] - q_norm;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  EXPECT_NEAR(kl_divergence(p, q), kl, kLogprobTolerance * kl);
  EXPECT_NEAR(kl_divergence(p, p), 0.0, kLogprobTolerance);
}

}  // namespace
}  // namespace ptq
