#pragma once
// Causal grouped-query attention over a batch of equally long sequences.
// While a BackendScope is alive (algorithms/backend.hpp), causal_attention
// runs on its device.
#include "algorithms/matrix.hpp"

namespace ptq {

struct AttentionShape {
  int seq_len = 0;
  int heads = 0;
  int kv_heads = 0;  // divides heads; head h reads kv head h / (heads / kv_heads)
  int head_dim = 0;
};

// q: [tokens, heads*head_dim], k, v: [tokens, kv_heads*head_dim], all after
// RoPE; out: [tokens, heads*head_dim] = softmax(q k^T / sqrt(head_dim) + causal mask) v
// per sequence and head, softmax in float32.
void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                      const AttentionShape& shape, MatrixRM& out);

// Scalar reference of the same function (plain loops, double accumulation),
// for tests of the fast path.
void causal_attention_reference(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                const AttentionShape& shape, MatrixRM& out);

}  // namespace ptq
