#include "pipeline/quantize/sensitivity.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "algorithms/budget.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/logprobs.hpp"
#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "pipeline/formats/mix_file.hpp"
#include "pipeline/quantize/calib_stats.hpp"
#include "pipeline/quantize/experts.hpp"

namespace ptq {

namespace {

using json = nlohmann::ordered_json;
constexpr double kUnmeasured = std::numeric_limits<double>::quiet_NaN();
constexpr Eigen::Index kHeadRows = 512;  // rows of logits formed at a time

double output_error(const MatrixRM& w, const MatrixRM& q, const Eigen::MatrixXd& h) {
  const Eigen::MatrixXd d = (q - w).cast<double>();
  return (d * h).cwiseProduct(d).sum();
}

// Twice the mean over `ids` of the squared error of the looked-up rows.
double lookup_error(const MatrixRM& w, const MatrixRM& q, std::span<const std::int32_t> ids) {
  double sum = 0;
  for (std::int32_t id : ids) sum += (q.row(id) - w.row(id)).cast<double>().squaredNorm();
  return 2.0 * sum / static_cast<double>(ids.size());
}

// The float model's logits on the first windows, and the KL of variants of it.
class KlProbe {
 public:
  KlProbe(const Model& model, BlockSource& blocks, std::vector<std::int32_t> ids, int seq_len,
          int batch_windows)
      : model_(model), blocks_(blocks), ids_(std::move(ids)), walk_{seq_len, batch_windows, {}} {
    reference_ = logits(run_from(model.embed(ids_), 0, nullptr), nullptr);
  }
  std::span<const std::int32_t> ids() const { return ids_; }

  // KL with block `block.layer` replaced, from that block's float input x.
  double with_block(MatrixRM x, const BlockWeights& block) const {
    return mean_kl(run_from(std::move(x), block.layer, &block), nullptr);
  }
  // KL with the embedding and/or the head replaced by `table` [vocab, hidden].
  double with_table(const MatrixRM& table, bool embedding, bool head) const {
    MatrixRM x = embedding ? rows_of(table) : model_.embed(ids_);
    return mean_kl(run_from(std::move(x), 0, nullptr), head ? &table : nullptr);
  }

 private:
  MatrixRM rows_of(const MatrixRM& table) const {
    MatrixRM x(static_cast<Eigen::Index>(ids_.size()), table.cols());
    for (std::size_t i = 0; i < ids_.size(); ++i) x.row(Eigen::Index(i)) = table.row(ids_[i]);
    return x;
  }
  // The final normed hidden states from block `first` on (that block replaced).
  MatrixRM run_from(MatrixRM x, int first, const BlockWeights* replaced) const {
    for (int layer = first; layer < model_.num_layers(); ++layer) {
      const BlockWeights& w = layer == first && replaced ? *replaced : blocks_.block(layer);
      forward_windows(model_.config(), w, x, walk_, nullptr, StreamUpdate::advance);
    }
    model_.final_norm(x);
    return x;
  }
  MatrixRM head_rows(const MatrixRM& x, Eigen::Index begin, Eigen::Index count,
                     const MatrixRM* head) const {
    if (head == nullptr) return model_.head(x, begin, count);
    MatrixRM y;
    linear_forward(x.middleRows(begin, count), *head, VectorF(), y);
    return y;
  }
  MatrixRM logits(const MatrixRM& x, const MatrixRM* head) const {
    MatrixRM out(x.rows(), model_.config().vocab_size);
    for (Eigen::Index b = 0; b < x.rows(); b += kHeadRows) {
      const Eigen::Index n = std::min(kHeadRows, x.rows() - b);
      out.middleRows(b, n) = head_rows(x, b, n, head);
    }
    return out;
  }
  double mean_kl(const MatrixRM& x, const MatrixRM* head) const {
    double sum = 0;
    for (Eigen::Index b = 0; b < x.rows(); b += kHeadRows) {
      const Eigen::Index n = std::min(kHeadRows, x.rows() - b);
      const MatrixRM q = head_rows(x, b, n, head);
      for (Eigen::Index r = 0; r < n; ++r)
        sum += kl_divergence({reference_.row(b + r).data(), std::size_t(reference_.cols())},
                             {q.row(r).data(), std::size_t(q.cols())});
    }
    return sum / static_cast<double>(x.rows());
  }

  const Model& model_;
  BlockSource& blocks_;
  std::vector<std::int32_t> ids_;
  WindowWalk walk_;
  MatrixRM reference_;  // [ids, vocab]
};

// Each Linear input's statistics over the float stream of one block; in a
// mixture layer also each expert's, over the tokens routed to it and (down)
// over every token.
class HessianCollector : public LinearObserver {
 public:
  HessianCollector(const ModelConfig& config, const Recipe& recipe, int layer)
      : config_(config), recipe_(recipe) {
    for (const auto& spec : linear_specs)
      stats_[std::size_t(spec.input)] = stats_of(linear_in_features(config, spec.role));
    if (!config.is_moe(layer)) return;
    const auto hidden = int(config.hidden_size), inner = int(config.moe.intermediate_size);
    experts_.resize(std::size_t(config.moe.experts));
    for (auto& e : experts_) e = {stats_of(hidden), stats_of(inner), stats_of(inner)};
  }
  bool observes_experts() const override { return true; }
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    stats_[std::size_t(linear_spec(roles.front()).input)].add(x);
  }
  void observe_expert(int, int expert, std::span<const LinearRole> roles, ExpertTokens tokens,
                      const MatrixRM& x) override {
    Expert& e = experts_.at(std::size_t(expert));
    if (roles.front() != LinearRole::down) return e.mlp_in.add(x);
    (tokens == ExpertTokens::routed ? e.hidden : e.hidden_all).add(x);
  }
  Eigen::MatrixXd hessian(const LinearKey& key) const {
    const LinearInput input = linear_spec(key.role).input;
    if (key.expert < 0) return gptq_hessian(stats_[std::size_t(input)].mean_xtx());
    const Expert& e = experts_.at(std::size_t(key.expert));
    const bool all = expert_takes_every_token(recipe_, config_, e.mlp_in.tokens);
    if (input == LinearInput::mlp_in)
      return gptq_hessian((all ? stats_[std::size_t(input)] : e.mlp_in).mean_xtx());
    return gptq_hessian((all ? e.hidden_all : e.hidden).mean_xtx());
  }

 private:
  struct Expert {
    InputStats mlp_in, hidden, hidden_all;
  };
  static InputStats stats_of(int features) { return InputStats(features, StatsContent::hessian); }
  const ModelConfig& config_;
  const Recipe& recipe_;
  std::array<InputStats, all_linear_inputs.size()> stats_;
  std::vector<Expert> experts_;
};

bool measures_kl(const MixContext& mix, const TensorCosts& t, std::size_t k) {
  return mix.recipe.mix.predictor == MixPredictor::kl ||
         (mix.recipe.mix.predictor == MixPredictor::kl_scaled && k == t.reference);
}

void log_costs(const MixContext& mix, const TensorCosts& t) {
  if (!mix.progress.log) return;
  std::string line = "mix " + t.name + ":";
  for (std::size_t k = 0; k < t.bytes.size(); ++k) {
    if (t.bytes[k] == 0) continue;
    char cell[96];
    std::snprintf(cell, sizeof cell, " %s e %.3g", mix.candidates.names[k].c_str(), t.error[k]);
    line += cell;
    if (!std::isnan(t.kl[k])) {
      std::snprintf(cell, sizeof cell, " KL %.3g", t.kl[k]);
      line += cell;
    }
  }
  mix.progress.log(line);
}

// A block's Linears at every candidate, on its float input x (all windows),
// which leaves as the block's output.
void measure_block(const MixContext& mix, const CandidateRounder& round, BlockSource& blocks,
                   int layer, MatrixRM& x, const WindowWalk& walk, const KlProbe& probe,
                   std::span<TensorCosts* const> linears) {
  const BlockWeights w = blocks.block(layer);
  const MatrixRM probe_x = x.topRows(static_cast<Eigen::Index>(probe.ids().size()));
  HessianCollector collector(mix.model.config(), mix.recipe, layer);
  forward_windows(mix.model.config(), w, x, walk, &collector, StreamUpdate::advance);
  for (TensorCosts* t : linears) {
    std::vector<Eigen::MatrixXd> h;
    for (const LinearKey& part : t->parts) h.push_back(collector.hessian(part));
    for (std::size_t k = 0; k < t->bytes.size(); ++k) {
      if (t->bytes[k] == 0) continue;
      BlockWeights changed = w;
      t->error[k] = 0;
      for (std::size_t i = 0; i < t->parts.size(); ++i) {
        const LinearKey& part = t->parts[i];
        changed.weight(part) = round(*t, &part, k, w.weight(part), &h[i]);
        t->error[k] += output_error(w.weight(part), changed.weight(part), h[i]);
      }
      if (measures_kl(mix, *t, k)) t->kl[k] = probe.with_block(probe_x, changed);
    }
    log_costs(mix, *t);
  }
}

// The embeddings and heads, after the blocks: x is the float stream's last
// hidden states over all windows, `ids` their tokens.
void measure_tables(const MixContext& mix, const CandidateRounder& round, const TableWeights& table,
                    MatrixRM x, std::span<const std::int32_t> ids, const KlProbe& probe,
                    std::span<TensorCosts* const> tables) {
  if (tables.empty()) return;
  mix.model.final_norm(x);
  InputStats head_input(static_cast<int>(x.cols()), StatsContent::hessian);
  for (Eigen::Index b = 0; b < x.rows(); b += kHeadRows) {
    const MatrixRM rows = x.middleRows(b, std::min(kHeadRows, x.rows() - b));
    head_input.add(rows);
  }
  const Eigen::MatrixXd head_h = gptq_hessian(head_input.mean_xtx());
  for (TensorCosts* t : tables) {
    const bool embedding = t->use != TensorUse::head;
    const bool head = t->use != TensorUse::embedding;
    const MatrixRM w = table(*t);
    for (std::size_t k = 0; k < t->bytes.size(); ++k) {
      if (t->bytes[k] == 0) continue;
      const MatrixRM q = round(*t, nullptr, k, w, nullptr);
      t->error[k] = (head ? output_error(w, q, head_h) : 0.0) +
                    (embedding ? lookup_error(w, q, ids) : 0.0);
      if (measures_kl(mix, *t, k)) t->kl[k] = probe.with_table(q, embedding, head);
    }
    log_costs(mix, *t);
  }
}

int measure(const MixContext& mix, const CalibrationSet& calibration, int batch_windows,
            const CandidateRounder& round, const TableWeights& table,
            std::vector<TensorCosts>& costs) {
  std::vector<std::vector<TensorCosts*>> linears(std::size_t(mix.model.num_layers()));
  std::vector<TensorCosts*> tables;
  for (TensorCosts& t : costs)
    (t.use == TensorUse::linear ? linears.at(std::size_t(t.layer)) : tables).push_back(&t);
  std::vector<std::int32_t> ids;
  for (const auto& w : calibration.windows) ids.insert(ids.end(), w.ids.begin(), w.ids.end());
  const int seq_len = calibration.config.seqlen;
  const std::size_t windows =
      std::min<std::size_t>(std::size_t(mix.recipe.mix.windows), calibration.windows.size());
  // The probes run the later blocks once per tensor: kept resident when their
  // float32 weights fit 4 GiB (a 1B model), else read again each time.
  BlockSource blocks(mix.model, std::size_t(4) << 30);
  const KlProbe probe(mix.model, blocks,
                      {ids.begin(), ids.begin() + std::ptrdiff_t(windows) * seq_len}, seq_len,
                      batch_windows);
  MatrixRM x = mix.model.embed(ids);
  const WindowWalk walk{seq_len, batch_windows, {}};
  for (int layer = 0; layer < mix.model.num_layers(); ++layer)
    measure_block(mix, round, blocks, layer, x, walk, probe, linears[std::size_t(layer)]);
  measure_tables(mix, round, table, std::move(x), ids, probe, tables);
  return static_cast<int>(windows);
}

// The costs an earlier mix measured: every tensor at every candidate it can
// take (the KL too for predictor kl). Returns its KL windows.
int read_costs(const MixContext& mix, std::string_view output, std::vector<TensorCosts>& costs) {
  const std::filesystem::path& path = mix.recipe.mix.costs;
  const json j = read_mix_record(path, output);
  std::map<std::string, const json*> entries;
  for (const json& e : j["tensors"])
    if (e.is_object() && e.contains("name") && e["name"].is_string())
      entries[e["name"].get<std::string>()] = &e;
  auto number = [&](const json& cell, const char* key, const std::string& where) {
    if (!cell.is_object() || !cell.contains(key) || !cell[key].is_number() ||
        !(cell[key].get<double>() >= 0))
      throw input_error(where, std::string("a measured ") + key + " >= 0",
                        cell.is_object() && cell.contains(key) ? describe_json(cell[key]) : "none");
    return cell[key].get<double>();
  };
  const bool all_kl = mix.recipe.mix.predictor == MixPredictor::kl;
  for (TensorCosts& t : costs) {
    const auto it = entries.find(t.name);
    const json* at = it != entries.end() && it->second->contains("candidates")
                         ? &(*it->second)["candidates"] : nullptr;
    for (std::size_t k = 0; k < t.bytes.size(); ++k) {
      if (t.bytes[k] == 0) continue;
      const std::string& type = mix.candidates.names[k];
      const std::string where = path.string() + ": " + t.name + " " + type;
      if (at == nullptr || !at->is_object() || !at->contains(type))
        throw input_error(where, "its measured costs", "none");
      t.error[k] = number((*at)[type], "output_error", where);
      if (all_kl || (*at)[type].contains("kl")) t.kl[k] = number((*at)[type], "kl", where);
    }
  }
  return j.value("kl_windows", 0);
}

// kl_scaled's reference per tensor: among the candidates it can take (and, with
// `measured`, whose KL was measured), the one of most bits within the budget's
// average bits per weight, else the one of fewest.
void set_references(std::vector<TensorCosts>& costs, const MixCandidates& candidates,
                    const MixBudgetBytes& budget, bool measured) {
  std::int64_t weights = 0;
  for (const TensorCosts& t : costs) weights += t.weights;
  const double average = 8.0 * double(budget.bytes) / double(weights);
  const auto& bits = candidates.bits;
  for (TensorCosts& t : costs) {
    std::optional<std::size_t> within, lowest;
    for (std::size_t k = 0; k < t.bytes.size(); ++k) {
      if (t.bytes[k] == 0 || (measured && std::isnan(t.kl[k]))) continue;
      if (bits[k] <= average && (!within || bits[k] > bits[*within])) within = k;
      if (!lowest || bits[k] < bits[*lowest]) lowest = k;
    }
    if (!lowest) throw input_error(t.name, "a KL measured at some candidate (kl_scaled)", "none");
    t.reference = within ? *within : *lowest;
  }
}

double predicted(const TensorCosts& t, std::size_t k, MixPredictor predictor) {
  switch (predictor) {
    case MixPredictor::output_error:
      return t.error[k];
    case MixPredictor::kl:
      return t.kl[k];
    case MixPredictor::kl_scaled:
      break;
  }
  const double unit = t.error[t.reference];
  return unit > 0 ? t.error[k] * t.kl[t.reference] / unit : 0.0;
}

}  // namespace

TensorCosts::TensorCosts(std::string n, TensorUse u, std::int64_t w, std::vector<std::uint64_t> b)
    : name(std::move(n)),
      use(u),
      weights(w),
      bytes(std::move(b)),
      error(bytes.size(), kUnmeasured),
      kl(bytes.size(), kUnmeasured) {
  if (std::all_of(bytes.begin(), bytes.end(), [](auto x) { return x == 0; }))
    throw input_error(name, "a candidate grid that fits its shape", "none");
}

int mix_costs(const MixContext& mix, const CalibrationSet* calibration, int batch_windows,
              std::string_view output, const MixBudgetBytes& budget, const CandidateRounder& round,
              const TableWeights& table, std::vector<TensorCosts>& costs) {
  if (!mix.recipe.measures_mix_costs()) {
    const int windows = read_costs(mix, output, costs);
    set_references(costs, mix.candidates, budget, true);
    return windows;
  }
  PTQ_ASSERT(calibration != nullptr);  // Recipe::needs_calibration
  set_references(costs, mix.candidates, budget, false);
  return measure(mix, *calibration, batch_windows, round, table, costs);
}

void check_mix_fits(std::span<const TensorCosts> costs, const MixBudgetBytes& budget,
                    std::uint64_t needed, const std::string& flag, std::int64_t bpw_weights,
                    std::string_view unit) {
  std::uint64_t smallest = 0;
  for (const TensorCosts& t : costs) {
    std::uint64_t least = std::numeric_limits<std::uint64_t>::max();
    for (std::uint64_t b : t.bytes)
      if (b != 0) least = std::min(least, budget.padded(b));
    smallest += least;
  }
  if (smallest <= budget.bytes) return;
  const std::uint64_t at_least = smallest + needed;
  const std::string least =
      bpw_weights > 0 ? std::to_string(8.0 * double(at_least) / double(bpw_weights)) + " bits per " +
                            std::string(unit)
                      : std::to_string(at_least) + " bytes";
  throw input_error(flag, "a budget of at least " + least + " (every tensor at its smallest candidate)",
                    "too small a budget");
}

std::vector<std::size_t> choose_mix(std::span<const TensorCosts> costs, MixPredictor predictor,
                                    const MixBudgetBytes& budget) {
  std::vector<std::vector<BudgetOption>> items;
  std::vector<std::vector<std::size_t>> index;  // option -> candidate
  for (const TensorCosts& t : costs) {
    items.emplace_back();
    index.emplace_back();
    for (std::size_t k = 0; k < t.bytes.size(); ++k) {
      if (t.bytes[k] == 0) continue;
      items.back().push_back({budget.padded(t.bytes[k]), predicted(t, k, predictor)});
      index.back().push_back(k);
    }
  }
  const auto choice = choose_within_budget(items, budget.bytes);
  PTQ_ASSERT(choice.has_value());  // check_mix_fits passed
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < costs.size(); ++i) out.push_back(index[i][(*choice)[i]]);
  return out;
}

std::string mix_record(json head, const MixContext& mix, std::span<const TensorCosts> costs,
                       std::span<const std::size_t> chosen, int windows) {
  const MixPredictor predictor = mix.recipe.mix.predictor;
  json j = {{"format", kMixFormat}, {"version", kMixVersion}};
  j.update(head);
  j["predictor"] = mix_predictor_name(predictor);
  j["kl_windows"] = windows;
  j["candidates"] = mix.candidates.names;
  double total = 0;
  std::uint64_t bytes = 0;
  json tensors = json::array();
  for (std::size_t i = 0; i < costs.size(); ++i) {
    const TensorCosts& t = costs[i];
    json at = json::object();
    for (std::size_t k = 0; k < t.bytes.size(); ++k) {
      if (t.bytes[k] == 0) continue;
      json cell = {{"bytes", t.bytes[k]}, {"output_error", t.error[k]}};
      if (!std::isnan(t.kl[k])) cell["kl"] = t.kl[k];
      cell["predicted"] = predicted(t, k, predictor);
      at[mix.candidates.names[k]] = cell;
    }
    total += predicted(t, chosen[i], predictor);
    bytes += t.bytes[chosen[i]];
    tensors.push_back({{"name", t.name},
                       {"type", mix.candidates.names[chosen[i]]},
                       {"bytes", t.bytes[chosen[i]]},
                       {"candidates", at}});
  }
  j["predicted"] = total;
  j["bytes"] = bytes;
  j["tensors"] = tensors;
  return j.dump(1) + "\n";
}

}  // namespace ptq
