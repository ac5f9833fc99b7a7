#include <algorithm>

#include "calibrate/tensor_names.hpp"
#include "pipeline/eval/eval.hpp"

namespace ptq {
namespace {

// One model's part: blocks, head, a batch through a block (the MLP's moment:
// stream, normed input, gate and up; or attention's: stream, normed input,
// q, k, v and context), the final hidden states, and a window's logits with
// log-softmax temporaries.
double model_bytes(const ModelConfig& c, const EvalConfig& e) {
  const double block = double(block_linear_weights(c)) * sizeof(float);
  const double blocks =
      BlockSource::keeps_resident(c, e.resident_budget_bytes) ? block * c.num_layers : block;
  const double head = double(c.vocab_size) * c.hidden_size * sizeof(float);
  const double tokens = double(e.batch_windows) * e.ctx;
  const double q = double(c.num_heads) * c.head_dim, kv = double(c.num_kv_heads) * c.head_dim;
  const double widest = std::max(2.0 * c.intermediate_size, 2.0 * q + 2.0 * kv);
  const double batch = tokens * (2.0 * c.hidden_size + widest) * sizeof(float);
  const double hidden = tokens * c.hidden_size * sizeof(float);
  const double logits = 2.0 * e.ctx * c.vocab_size * sizeof(float);
  return blocks + head + batch + hidden + logits;
}

}  // namespace

std::uint64_t estimate_eval_bytes(const ModelConfig& model, const EvalConfig& config,
                                  bool with_reference) {
  const double one = model_bytes(model, config);
  return static_cast<std::uint64_t>(kProcessOverheadBytes + (with_reference ? 2 * one : one));
}

}  // namespace ptq
