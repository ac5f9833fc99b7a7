#include "pipeline/eval/tasks.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>

#include "calibrate/logprobs.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

// One (item, choice) pair: the context tokens followed by the continuation's.
struct Sequence {
  std::size_t item = 0, choice = 0;
  int context_len = 0, continuation_len = 0;
  int length() const { return context_len + continuation_len; }
};

std::vector<Sequence> list_sequences(std::span<const TokenizedItem> tokens) {
  std::vector<Sequence> seqs;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    for (std::size_t c = 0; c < tokens[i].continuations.size(); ++c) {
      seqs.push_back({i, c, static_cast<int>(tokens[i].context.size()),
                      static_cast<int>(tokens[i].continuations[c].size())});
    }
  }
  return seqs;
}

// Groups of sequences of similar length: sorted longest first (ties in input
// order), each group as many as fit `batch_tokens` once padded to its first
// (longest) member. A sequence longer than the budget forms a group alone.
std::vector<std::span<const Sequence>> group_by_length(std::vector<Sequence>& seqs,
                                                       int batch_tokens) {
  std::stable_sort(seqs.begin(), seqs.end(),
                   [](const Sequence& a, const Sequence& b) { return a.length() > b.length(); });
  std::vector<std::span<const Sequence>> groups;
  std::size_t first = 0;
  while (first < seqs.size()) {
    const std::size_t fit = std::max<std::size_t>(1, batch_tokens / seqs[first].length());
    const std::size_t count = std::min(fit, seqs.size() - first);
    groups.emplace_back(seqs.data() + first, count);
    first += count;
  }
  return groups;
}

// Sequences of a group back to back, each padded on the right to `padded_len`
// by repeating its last token. Causal attention keeps padding from reaching
// the real positions, which are the only ones read.
std::vector<std::int32_t> pack_group(std::span<const Sequence> group,
                                     std::span<const TokenizedItem> tokens, int padded_len) {
  std::vector<std::int32_t> ids;
  ids.reserve(group.size() * static_cast<std::size_t>(padded_len));
  for (const Sequence& s : group) {
    const TokenizedItem& t = tokens[s.item];
    const auto& cont = t.continuations[s.choice];
    ids.insert(ids.end(), t.context.begin(), t.context.end());
    ids.insert(ids.end(), cont.begin(), cont.end());
    ids.insert(ids.end(), static_cast<std::size_t>(padded_len - s.length()), ids.back());
  }
  return ids;
}

// Sums log p of every continuation token of the group's sequences into
// `scores`. Only the rows that predict a continuation token (positions
// context_len-1 .. length-2) go through the head, in one product.
void score_group(const Model& model, BlockSource& blocks, std::span<const Sequence> group,
                 std::span<const TokenizedItem> tokens, const LinearInputTransform* transform,
                 std::vector<ItemScore>& scores) {
  const int padded_len = group.front().length();
  const MatrixRM hidden = final_hidden(model, blocks, pack_group(group, tokens, padded_len),
                                       padded_len, transforming(transform));
  std::vector<Eigen::Index> first_row(group.size() + 1, 0);
  for (std::size_t g = 0; g < group.size(); ++g) {
    first_row[g + 1] = first_row[g] + group[g].continuation_len;
  }
  MatrixRM predicting(first_row.back(), hidden.cols());
  for (std::size_t g = 0; g < group.size(); ++g) {
    const Eigen::Index row0 = static_cast<Eigen::Index>(g) * padded_len + group[g].context_len - 1;
    predicting.middleRows(first_row[g], group[g].continuation_len) =
        hidden.middleRows(row0, group[g].continuation_len);
  }
  const MatrixRM logits = model.head(predicting, 0, predicting.rows());
  tbb::parallel_for(std::size_t{0}, group.size(), [&](std::size_t g) {
    const Sequence& s = group[g];
    const auto& cont = tokens[s.item].continuations[s.choice];
    double sum = 0.0;
    for (int j = 0; j < s.continuation_len; ++j) {
      const Eigen::Index r = first_row[g] + j;
      sum += token_logprob({logits.row(r).data(), static_cast<std::size_t>(logits.cols())}, cont[j]);
    }
    scores[s.item].choices[s.choice].loglik = sum;
  });
}

enum class Normalization { none, per_byte };

int argmax_of(const std::vector<ChoiceScore>& choices, Normalization norm) {
  PTQ_ASSERT(!choices.empty());
  auto value = [norm](const ChoiceScore& c) {
    return norm == Normalization::per_byte ? c.loglik / static_cast<double>(c.bytes) : c.loglik;
  };
  int best = 0;
  for (std::size_t i = 1; i < choices.size(); ++i) {
    if (value(choices[i]) > value(choices[static_cast<std::size_t>(best)])) best = static_cast<int>(i);
  }
  return best;
}

double fraction(int count, std::size_t of) {
  return static_cast<double>(count) / static_cast<double>(of);
}

}  // namespace

int ItemScore::pick() const { return argmax_of(choices, Normalization::none); }
int ItemScore::pick_norm() const { return argmax_of(choices, Normalization::per_byte); }

void TaskEvalConfig::validate() const {
  if (batch_tokens < 1) throw input_error("task batch_tokens", ">= 1", std::to_string(batch_tokens));
}

std::vector<TokenizedItem> tokenize_task(const Task& task, const Tokenizer& tokenizer) {
  std::vector<TokenizedItem> out(task.items.size());
  // Errors are kept per item and the first one is thrown, whatever the thread count.
  std::vector<std::string> errors(task.items.size());
  tbb::parallel_for(std::size_t{0}, task.items.size(), [&](std::size_t i) {
    const TaskItem& item = task.items[i];
    try {
      out[i].context = tokenizer.encode(item.context);
      for (const std::string& choice : item.choices) {
        out[i].continuations.push_back(tokenizer.encode(" " + choice));
      }
    } catch (const InputError& e) {
      errors[i] = e.what();
    }
  });
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!errors[i].empty()) throw InputError(task.name + " item " + task.items[i].id + ": " + errors[i]);
    if (out[i].context.empty()) {
      throw input_error(task.name + " item " + task.items[i].id, "a context of at least one token",
                        "none");
    }
  }
  return out;
}

std::vector<ItemScore> score_task(const Model& model, const Task& task,
                                  std::span<const TokenizedItem> tokens,
                                  const TaskEvalConfig& config, const TaskProgress& progress) {
  config.validate();
  PTQ_ASSERT(tokens.size() == task.items.size());
  std::vector<ItemScore> scores(task.items.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    for (std::size_t c = 0; c < task.items[i].choices.size(); ++c) {
      scores[i].choices.push_back({0.0, static_cast<int>(tokens[i].continuations[c].size()),
                                   static_cast<int>(task.items[i].choices[c].size() + 1)});
    }
  }
  std::vector<Sequence> seqs = list_sequences(tokens);
  BlockSource blocks(model, config.resident_budget_bytes);
  std::size_t done = 0;
  for (std::span<const Sequence> group : group_by_length(seqs, config.batch_tokens)) {
    score_group(model, blocks, group, tokens, config.input_transform, scores);
    done += group.size();
    if (progress) progress(done, seqs.size());
  }
  return scores;
}

TaskResult summarize_task(const Task& task, std::vector<ItemScore> scores,
                          const std::vector<ItemScore>* reference) {
  PTQ_ASSERT(scores.size() == task.items.size() && !scores.empty());
  PTQ_ASSERT(!reference || reference->size() == scores.size());
  int correct = 0, correct_norm = 0, agree = 0, agree_norm = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    correct += scores[i].pick() == task.items[i].gold;
    correct_norm += scores[i].pick_norm() == task.items[i].gold;
    if (reference) {
      agree += scores[i].pick() == (*reference)[i].pick();
      agree_norm += scores[i].pick_norm() == (*reference)[i].pick_norm();
    }
  }
  TaskResult r;
  r.name = task.name;
  r.items = static_cast<int>(scores.size());
  r.acc = fraction(correct, scores.size());
  r.acc_norm = fraction(correct_norm, scores.size());
  if (reference) {
    r.agree = fraction(agree, scores.size());
    r.agree_norm = fraction(agree_norm, scores.size());
  }
  r.scores = std::move(scores);
  return r;
}

TaskResult evaluate_task(const Model& model, const Model* reference, const Tokenizer& tokenizer,
                         const Task& task, const TaskEvalConfig& config,
                         const TaskProgress& progress) {
  if (reference && reference->config().vocab_size != model.config().vocab_size) {
    throw input_error(reference->path().string() + ": reference vocab_size",
                      std::to_string(model.config().vocab_size) + " (as the evaluated model)",
                      std::to_string(reference->config().vocab_size));
  }
  const std::vector<TokenizedItem> tokens = tokenize_task(task, tokenizer);
  std::vector<ItemScore> scores = score_task(model, task, tokens, config, progress);
  if (!reference) return summarize_task(task, std::move(scores));
  TaskEvalConfig ref_config = config;
  ref_config.input_transform = nullptr;
  const std::vector<ItemScore> ref_scores = score_task(*reference, task, tokens, ref_config, progress);
  return summarize_task(task, std::move(scores), &ref_scores);
}

nlohmann::json task_json(const TaskResult& r) {
  nlohmann::json j = {{"items", r.items}, {"acc", r.acc}, {"acc_norm", r.acc_norm}};
  if (r.agree) j["agree"] = *r.agree;
  if (r.agree_norm) j["agree_norm"] = *r.agree_norm;
  return j;
}

}  // namespace ptq
