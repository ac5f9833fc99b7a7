#include "pipeline/eval/eval.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "calibrate/logprobs.hpp"
#include "io/error.hpp"
#include "io/text_file.hpp"

namespace ptq {
namespace {

// Sums of one evaluation, accumulated in double in window order.
struct Totals {
  double nll = 0.0, kl = 0.0;
  std::int64_t predicted = 0, agree = 0;
  std::vector<float> kl_values;  // per position, with a reference
};

std::span<const float> row_of(const MatrixRM& m, Eigen::Index r) {
  return {m.row(r).data(), static_cast<std::size_t>(m.cols())};
}

// Scores positions 0..ctx-2 of one window (each predicts the next token).
// Per-position values are computed in parallel, then summed in order, so the
// totals do not depend on the thread count.
void score_window(const MatrixRM& logits, const MatrixRM* ref_logits,
                  std::span<const std::int32_t> window, Totals& totals) {
  const int positions = static_cast<int>(window.size()) - 1;
  std::vector<double> nll(positions), kl(positions);
  std::vector<char> agree(positions);
  tbb::parallel_for(0, positions, [&](int p) {
    nll[p] = -token_logprob(row_of(logits, p), window[p + 1]);
    if (ref_logits) {
      kl[p] = kl_divergence(row_of(*ref_logits, p), row_of(logits, p));
      agree[p] = argmax(row_of(*ref_logits, p)) == argmax(row_of(logits, p));
    }
  });
  for (int p = 0; p < positions; ++p) {
    if (!std::isfinite(nll[p]))
      throw input_error("eval: token " + std::to_string(totals.predicted + p + 1) + " of the text",
                        "a finite log-probability",
                        "NaN or infinity (the forward overflowed: non-finite logits)");
    totals.nll += nll[p];
    totals.kl += kl[p];
    totals.agree += agree[p];
    if (ref_logits) totals.kl_values.push_back(static_cast<float>(kl[p]));
  }
  totals.predicted += positions;
}

void check_compatible(const Model& model, const Model& reference) {
  if (reference.config().vocab_size != model.config().vocab_size) {
    throw input_error(reference.path().string() + ": reference vocab_size",
                      std::to_string(model.config().vocab_size) + " (as the evaluated model)",
                      std::to_string(reference.config().vocab_size));
  }
}

// The value `fraction` of `values` do not exceed (nearest rank); reorders them.
double percentile(std::vector<float>& values, double fraction) {
  const auto rank = static_cast<std::size_t>(
      std::ceil(fraction * static_cast<double>(values.size())));
  const auto nth = values.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(rank, 1) - 1);
  std::nth_element(values.begin(), nth, values.end());
  return *nth;
}

EvalResult finish(Totals& t, int windows, bool with_reference) {
  EvalResult r;
  r.nll_sum = t.nll;
  r.predicted_tokens = t.predicted;
  r.windows = windows;
  r.ppl = std::exp(t.nll / static_cast<double>(t.predicted));
  if (with_reference) {
    r.kl = t.kl / static_cast<double>(t.predicted);
    r.top1 = static_cast<double>(t.agree) / static_cast<double>(t.predicted);
    r.kl_p99 = percentile(t.kl_values, 0.99);
    r.kl_p999 = percentile(t.kl_values, 0.999);
  }
  return r;
}

}  // namespace

void EvalConfig::validate() const {
  if (ctx < 2) throw input_error("--ctx", "at least 2", std::to_string(ctx));
  if (max_windows < 0) throw input_error("--max-windows", ">= 0", std::to_string(max_windows));
  if (batch_windows < 1) {
    throw input_error("eval batch_windows", ">= 1", std::to_string(batch_windows));
  }
}

EvalResult evaluate(const Model& model, std::span<const std::int32_t> ids, const EvalConfig& config,
                    const Model* reference, const EvalProgress& progress) {
  config.validate();
  int windows = static_cast<int>(ids.size() / static_cast<std::size_t>(config.ctx));
  if (windows == 0) {
    throw input_error("eval tokens", "at least one window of " + std::to_string(config.ctx),
                      std::to_string(ids.size()) + " tokens");
  }
  if (config.max_windows > 0) windows = std::min(windows, config.max_windows);
  if (reference) check_compatible(model, *reference);
  BlockSource blocks(model, config.resident_budget_bytes);
  std::optional<BlockSource> ref_blocks;
  if (reference) ref_blocks.emplace(*reference, config.resident_budget_bytes);
  Totals totals;
  const std::size_t ctx = static_cast<std::size_t>(config.ctx);
  for (int first = 0; first < windows; first += config.batch_windows) {
    const int count = std::min(config.batch_windows, windows - first);
    const auto batch = ids.subspan(first * ctx, count * ctx);
    const MatrixRM hidden =
        final_hidden(model, blocks, batch, config.ctx, transforming(config.input_transform));
    MatrixRM ref_hidden;
    if (reference) ref_hidden = final_hidden(*reference, *ref_blocks, batch, config.ctx);
    for (int w = 0; w < count; ++w) {
      const Eigen::Index row0 = static_cast<Eigen::Index>(w * ctx);
      const MatrixRM logits = model.head(hidden, row0, config.ctx);
      MatrixRM ref_logits;
      if (reference) ref_logits = reference->head(ref_hidden, row0, config.ctx);
      score_window(logits, reference ? &ref_logits : nullptr, batch.subspan(w * ctx, ctx), totals);
    }
    if (progress) progress(first + count, windows);
  }
  return finish(totals, windows, reference != nullptr);
}

nlohmann::json eval_json(const EvalResult& r, const EvalConfig& config) {
  nlohmann::json j = {{"ppl", r.ppl},
                      {"nll_sum", r.nll_sum},
                      {"predicted_tokens", r.predicted_tokens},
                      {"windows", r.windows},
                      {"ctx", config.ctx}};
  if (r.kl) j["kl"] = *r.kl;
  if (r.top1) j["top1"] = *r.top1;
  if (r.kl_p99) j["kl_p99"] = *r.kl_p99;
  if (r.kl_p999) j["kl_p999"] = *r.kl_p999;
  return j;
}

void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j) {
  write_text_atomic(path, j.dump(1) + "\n");
}

void write_eval_json(const std::filesystem::path& path, const EvalResult& r,
                     const EvalConfig& config) {
  write_json_atomic(path, eval_json(r, config));
}

}  // namespace ptq
