#pragma once
// Perplexity (and, against a reference model, KL and top-1 agreement) by the
// protocol of shared/fixtures/PROTOCOL.md: non-overlapping windows of `ctx`
// tokens, remainder dropped, a fresh context per window, tokens 1..ctx-1 of
// every window predicted, NLL summed in double.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "calibrate/model.hpp"

namespace ptq {

struct EvalConfig {
  int ctx = 512;          // window length in tokens
  int max_windows = 0;    // evaluate only the first N windows; 0 = all
  int batch_windows = 8;  // windows run through each block together (large GEMMs)
  // All blocks' float32 weights stay resident (loaded once) when they fit this
  // budget, per model; otherwise blocks are streamed once per batch.
  std::size_t resident_budget_bytes = kResidentBlocksBudget;
  // Applied to every Linear input of the evaluated model (not the reference),
  // e.g. simulated int8 activations of a W8A8 model; may be null.
  const LinearInputTransform* input_transform = nullptr;

  void validate() const;  // InputError on a bad value
};

struct EvalResult {
  double ppl = 0.0;
  double nll_sum = 0.0;
  std::int64_t predicted_tokens = 0;
  int windows = 0;
  std::optional<double> kl;    // KL(reference || model), mean over predicted positions
  std::optional<double> top1;  // fraction of positions where both argmaxes agree
  // The 99th and 99.9th percentiles of the per-position KL (the value that
  // fraction of positions do not exceed, nearest rank).
  std::optional<double> kl_p99, kl_p999;
};

// Called after each batch with (windows done, windows in all).
using EvalProgress = std::function<void(int, int)>;

// InputError if `ids` holds fewer than ctx tokens or an id outside the vocab.
EvalResult evaluate(const Model& model, std::span<const std::int32_t> ids, const EvalConfig& config,
                    const Model* reference = nullptr, const EvalProgress& progress = {});

// {"ppl", "nll_sum", "predicted_tokens", "windows", "ctx"[, "kl", "top1", "kl_p99", "kl_p999"]}
nlohmann::json eval_json(const EvalResult& result, const EvalConfig& config);

// Writes `j` atomically (temporary file, then rename).
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j);

// write_json_atomic(path, eval_json(result, config)).
void write_eval_json(const std::filesystem::path& path, const EvalResult& result,
                     const EvalConfig& config);

// Approximate peak of the memory `evaluate` allocates (not the mapped
// checkpoint's pages) for a model of `model`'s shape, with a reference model of
// the same shape or not: its float32 head, its blocks (all, or one at a time, as
// BlockSource decides under the budget), a full batch's activations and one
// window's logits. For `ptq eval --dry-run`.
std::uint64_t estimate_eval_bytes(const ModelConfig& model, const EvalConfig& config,
                                  bool with_reference);

}  // namespace ptq
