// Deciding: a verdict per variant from its measured changes, and the paired
// bootstrap interval the task changes are judged with.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "io/error.hpp"
#include "pipeline/report/report.hpp"

namespace ptq {

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::deploy:
      return "deploy";
    case Verdict::consider:
      return "consider";
    case Verdict::dont:
      return "don't";
  }
  return "";
}

void Thresholds::validate() const {
  if (!(task_dont_pct <= task_deploy_pct))
    throw input_error("--task-dont", "at most --task-deploy (" + std::to_string(task_deploy_pct) + ")",
                      std::to_string(task_dont_pct));
  if (!(kl_deploy >= 0 && kl_deploy <= kl_dont))
    throw input_error("--kl-deploy", "between 0 and --kl-dont (" + std::to_string(kl_dont) + ")",
                      std::to_string(kl_deploy));
  if (!(ppl_deploy_pct <= ppl_dont_pct))
    throw input_error("--ppl-deploy", "at most --ppl-dont (" + std::to_string(ppl_dont_pct) + ")",
                      std::to_string(ppl_deploy_pct));
}

PairedChange paired_change(const std::vector<char>& baseline, const std::vector<char>& variant,
                           int samples, std::uint64_t seed) {
  const std::size_t n = baseline.size();
  if (n == 0 || variant.size() != n) return {};
  std::vector<int> diff(n);  // -1, 0 or 1 per item
  for (std::size_t i = 0; i < n; ++i) diff[i] = int{variant[i] != 0} - int{baseline[i] != 0};
  const auto mean_points = [&](auto pick) {
    long sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += diff[pick(i)];
    return 100.0 * static_cast<double>(sum) / static_cast<double>(n);
  };
  PairedChange c{.points = mean_points([](std::size_t i) { return i; })};
  std::mt19937_64 rng(seed);  // the same interval on every machine and thread count
  std::vector<double> means(static_cast<std::size_t>(samples));
  for (double& m : means) m = mean_points([&](std::size_t) { return rng() % n; });
  std::sort(means.begin(), means.end());
  const auto at = [&](double q) {
    return means[std::min(means.size() - 1, static_cast<std::size_t>(q * static_cast<double>(means.size())))];
  };
  c.low = at(0.025);
  c.high = at(0.975);
  return c;
}

namespace {

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f %%", v);
  return buf;
}

Verdict by_threshold(double value, double deploy, double dont, bool higher_is_better) {
  if (higher_is_better) return value >= deploy ? Verdict::deploy : value < dont ? Verdict::dont : Verdict::consider;
  return value <= deploy ? Verdict::deploy : value > dont ? Verdict::dont : Verdict::consider;
}

// The worst task's relative accuracy change (acc) decides.
Recommendation by_tasks(const VariantReport& v, const Thresholds& t) {
  Recommendation r;
  double worst = INFINITY;
  for (const TaskMetrics& task : v.tasks) {
    const double base = task.acc - task.acc_change->points / 100.0;
    const double relative = base > 0 ? 100.0 * (task.acc / base - 1.0) : 0.0;
    if (relative >= worst) continue;
    worst = relative;
    r.decided_by = task.task + " acc " + percent(relative);
    r.significant = task.acc_change->significant();
  }
  r.verdict = by_threshold(worst, t.task_deploy_pct, t.task_dont_pct, true);
  if (!r.significant) r.decided_by += ", not significant";
  return r;
}

// The text with the largest mean KL decides.
Recommendation by_kl(const VariantReport& v, const Thresholds& t) {
  Recommendation r;
  double worst = -1;
  for (const TextMetrics& text : v.texts) {
    if (!text.kl_mean || *text.kl_mean <= worst) continue;
    worst = *text.kl_mean;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s KL %.4f", text.text.c_str(), worst);
    r.decided_by = buf;
  }
  r.verdict = by_threshold(worst, t.kl_deploy, t.kl_dont, false);
  return r;
}

}  // namespace

Recommendation recommend(const VariantReport& v, const Thresholds& t) {
  if (v.tasks.empty() && v.texts.empty()) {
    Recommendation none;
    none.verdict = Verdict::consider;
    none.decided_by = "nothing measured";
    return none;
  }
  Recommendation r = v.tasks.empty() ? by_kl(v, t) : by_tasks(v, t);
  // A task change within noise proves nothing either way: where the texts'
  // KL says worse, it decides.
  if (!v.tasks.empty() && !r.significant && !v.texts.empty()) {
    Recommendation kl = by_kl(v, t);
    if (kl.verdict > r.verdict) {
      kl.decided_by += " (the task changes are within noise: " + r.decided_by + ")";
      kl.significant = false;
      r = kl;
    }
  }
  double worst_ppl = -INFINITY;
  std::string worst_text;
  for (const TextMetrics& text : v.texts)
    if (text.ppl_change_pct > worst_ppl) {
      worst_ppl = text.ppl_change_pct;
      worst_text = text.text;
    }
  if (!v.tasks.empty() && !v.texts.empty()) {
    const Verdict by_ppl = by_threshold(worst_ppl, t.ppl_deploy_pct, t.ppl_dont_pct, false);
    if (by_ppl != r.verdict)
      r.flags.push_back("perplexity says " + std::string(verdict_name(by_ppl)) + " (" + worst_text +
                        " ppl " + percent(worst_ppl) + "), tasks say " +
                        std::string(verdict_name(r.verdict)));
  }
  return r;
}

}  // namespace ptq
