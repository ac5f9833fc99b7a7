#pragma once
// Per-position quantities of logits rows: log-probabilities of given tokens,
// KL divergence between two models' next-token distributions, argmax.
// Accumulation in double; each function reads one row [vocab].
#include <cstdint>
#include <span>

namespace ptq {

// log softmax(row)[token].
double token_logprob(std::span<const float> row, std::int32_t token);

// KL(p || q) = sum_v p(v) (log p(v) - log q(v)) with p = softmax(p_row),
// q = softmax(q_row).
double kl_divergence(std::span<const float> p_row, std::span<const float> q_row);

// Index of the largest logit (the first one on ties).
std::int32_t argmax(std::span<const float> row);

}  // namespace ptq
