#pragma once
// Multiple-choice tasks (HellaSwag, ARC, PIQA) by the protocol of
// shared/fixtures/PROTOCOL.md "Multiple-choice tasks": the score of choice i is
// ll_i = sum of log p over the tokens of " " + choice_i, tokenized separately
// from the context (no BOS, nothing truncated) and appended to the context
// tokens. acc: gold == argmax ll_i; acc_norm: gold == argmax ll_i / bytes_i,
// bytes_i = UTF-8 length of " " + choice_i.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "calibrate/model.hpp"
#include "io/tokenizer.hpp"

namespace ptq {

struct TaskItem {
  std::string id;
  std::string context;
  std::vector<std::string> choices;  // at least two
  int gold = 0;                      // index into choices
};

struct Task {
  std::string name;  // the file name without its extension, e.g. "arc_easy_test"
  std::vector<TaskItem> items;
};

enum class TaskFormat {
  jsonl,           // one {"id", "context", "choices", "gold"} object per line
  hellaswag_text,  // llama.cpp's layout: per item six lines (context, gold, four endings)
};

// ".jsonl"/".json" -> jsonl, ".txt" -> hellaswag_text; any other extension is
// decided by the first non-blank byte ('{' means jsonl).
TaskFormat detect_task_format(const std::filesystem::path& path);

// Reads the first `limit` items (0 = all). Malformed input is an InputError
// naming file:line and what was expected there.
Task load_task(const std::filesystem::path& path, int limit = 0);

// Token ids of one item: the context, and " " + choice for every choice.
struct TokenizedItem {
  std::vector<std::int32_t> context;
  std::vector<std::vector<std::int32_t>> continuations;
};

// InputError (naming the task and item) if a context has no tokens.
std::vector<TokenizedItem> tokenize_task(const Task& task, const Tokenizer& tokenizer);

struct ChoiceScore {
  double loglik = 0.0;  // nats, summed over the continuation tokens
  int tokens = 0;       // tokens of " " + choice
  int bytes = 0;        // UTF-8 bytes of " " + choice
};

struct ItemScore {
  std::vector<ChoiceScore> choices;

  int pick() const;       // argmax loglik (the first one on ties)
  int pick_norm() const;  // argmax loglik / bytes (the first one on ties)
};

struct TaskEvalConfig {
  // Sequences of similar length are padded on the right to the longest of
  // their group and run through each block together, up to this many tokens
  // (padding included) per group. Results do not depend on the thread count.
  int batch_tokens = 8192;
  // All blocks' float32 weights stay resident when they fit this budget.
  std::size_t resident_budget_bytes = kResidentBlocksBudget;
  // Applied to every Linear input of the scored model (evaluate_task: not the
  // reference), e.g. simulated int8 activations; may be null. Per-row or
  // per-element transforms only, so padding rows do not affect real ones.
  const LinearInputTransform* input_transform = nullptr;

  void validate() const;  // InputError on a bad value
};

// Called after each group with (sequences done, sequences in all).
using TaskProgress = std::function<void(std::size_t, std::size_t)>;

// ll, token and byte counts of every choice of every item, in item order.
std::vector<ItemScore> score_task(const Model& model, const Task& task,
                                  std::span<const TokenizedItem> tokens,
                                  const TaskEvalConfig& config, const TaskProgress& progress = {});

struct TaskResult {
  std::string name;
  int items = 0;
  double acc = 0.0;
  double acc_norm = 0.0;
  // With a reference model: fraction of items where the model picks the same
  // choice as the reference (by ll, and by ll / bytes).
  std::optional<double> agree;
  std::optional<double> agree_norm;
  std::vector<ItemScore> scores;
};

// Summarizes scores (and compares them with the reference's when given).
TaskResult summarize_task(const Task& task, std::vector<ItemScore> scores,
                          const std::vector<ItemScore>* reference = nullptr);

// Tokenizes `task` with `tokenizer` and scores it with `model` (and
// `reference`, which must share the vocabulary).
TaskResult evaluate_task(const Model& model, const Model* reference, const Tokenizer& tokenizer,
                         const Task& task, const TaskEvalConfig& config,
                         const TaskProgress& progress = {});

// {"items", "acc", "acc_norm"[, "agree", "agree_norm"]}
nlohmann::json task_json(const TaskResult& result);

}  // namespace ptq
