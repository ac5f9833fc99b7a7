#pragma once
// Causal grouped-query attention over a batch of equally long sequences.
// While a BackendScope is alive (algorithms/backend.hpp), causal_attention
// runs on its device.
#include <cmath>

#include "algorithms/matrix.hpp"

namespace ptq {

struct AttentionShape {
  int seq_len = 0;
  int heads = 0;
  int kv_heads = 0;  // divides heads; head h reads kv head h / (heads / kv_heads)
  int head_dim = 0;
  float scale = 0;    // of q k^T; 0: 1 / sqrt(head_dim)
  float softcap = 0;  // scores become softcap * tanh(scores / softcap) (Gemma 2); 0: none
  int window = 0;     // a query sees the latest `window` positions, itself included; 0: all
};

// The scale of q k^T that `shape` asks for.
inline float score_scale(const AttentionShape& shape) {
  return shape.scale > 0 ? shape.scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
}

// q: [tokens, heads*head_dim], k, v: [tokens, kv_heads*head_dim], all after
// RoPE; out: [tokens, heads*head_dim] = softmax(cap(q k^T * scale) + mask) v per
// sequence and head, softmax in float32; the mask hides later positions and,
// with a window, those `window` or more positions back.
void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                      const AttentionShape& shape, MatrixRM& out);

// Scalar reference of the same function (plain loops, double accumulation),
// for tests of the fast path.
void causal_attention_reference(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                const AttentionShape& shape, MatrixRM& out);

}  // namespace ptq
