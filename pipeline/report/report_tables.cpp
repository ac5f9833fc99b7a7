#include "pipeline/report/report_tables.hpp"

#include <cstdio>

namespace ptq {

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

namespace {

std::string mib(double bytes) { return fixed(bytes / (1024.0 * 1024.0), 1); }

std::string signed_fixed(double value, int decimals) {
  std::string text = value >= 0 ? "+" : "";
  return text.append(fixed(value, decimals));
}

template <class T, class F>
std::string or_na(const std::optional<T>& v, F format, const std::string& why) {
  return v ? format(*v) : "n/a: " + why;
}

std::string change_cell(const std::optional<PairedChange>& c) {
  if (!c) return "(baseline)";
  std::string cell = signed_fixed(c->points, 1) + " [" + signed_fixed(c->low, 1) + ", " +
                     signed_fixed(c->high, 1) + "]";
  return c->significant() ? cell : cell + " n.s.";
}

std::vector<const VariantReport*> all_rows(const Report& r) {
  std::vector<const VariantReport*> rows = {&r.baseline};
  for (const VariantReport& v : r.variants) rows.push_back(&v);
  return rows;
}

ReportTable summary(const Report& r) {
  ReportTable t{"Recommendation",
                "From the worst task's accuracy change relative to the baseline (deploy at least " +
                    fixed(r.config.thresholds.task_deploy_pct, 1) + " %, don't below " +
                    fixed(r.config.thresholds.task_dont_pct, 1) + " %), or without tasks the largest mean KL "
                    "(deploy at most " + fixed(r.config.thresholds.kl_deploy, 3) + ", don't above " +
                    fixed(r.config.thresholds.kl_dont, 3) + "), which also decides where the task "
                    "changes are within noise and it says worse.",
                {"variant", "kind", "recommendation", "decided by", "flags"}, {}};
  t.rows.push_back({r.baseline.input.name, r.baseline.kind, "(baseline)", "", ""});
  for (const VariantReport& v : r.variants) {
    const Recommendation& rec = *v.recommendation;
    std::string flags;
    for (const std::string& f : rec.flags) flags += (flags.empty() ? "" : "; ") + f;
    t.rows.push_back({v.input.name, v.kind, std::string(verdict_name(rec.verdict)), rec.decided_by, flags});
  }
  return t;
}

ReportTable sizes(const Report& r) {
  ReportTable t{"Size, memory and speed",
                "bits/weight: the weight files over the baseline's " + std::to_string(r.parameters) +
                    " parameters. Serve MiB is an estimate: weights + float16 KV cache for " +
                    std::to_string(r.config.serve_context) + " tokens x " +
                    std::to_string(r.config.serve_batch) + " sequences. Eval peak: the process's "
                    "peak resident memory while it was evaluated (the baseline resident too, for KL).",
                {"variant", "bytes", "bits/weight", "eval peak MiB", "serve MiB (estimate)",
                 "quantize s", "quantize peak MiB", "prompt tok/s", "generation tok/s"},
                {}};
  for (const VariantReport* v : all_rows(r)) {
    const auto tps = [&](const std::optional<double>& x) {
      return or_na(x, [](double s) { return fixed(s, 1); }, v->speed_note);
    };
    t.rows.push_back({v->input.name, std::to_string(v->model_bytes), fixed(v->bits_per_weight, 2),
                      mib(static_cast<double>(v->eval_peak_bytes)), mib(static_cast<double>(v->serve_bytes)),
                      or_na(v->quantize_seconds, [](double s) { return fixed(s, 2); }, "no run.json"),
                      or_na(v->quantize_peak_bytes, [](std::uint64_t b) { return mib(static_cast<double>(b)); },
                            "no run.json"),
                      tps(v->prompt_tps), tps(v->generation_tps)});
  }
  return t;
}

ReportTable text_table(const Report& r, std::size_t text) {
  ReportTable t{"Text: " + r.config.texts[text].name + " (" + r.config.texts[text].path.filename().string() + ")",
                "KL(baseline || variant) per predicted position: mean and 99th / 99.9th percentile; top-1: "
                "positions where both pick the same token.",
                {"variant", "ppl", "ppl change %", "KL mean", "KL p99", "KL p99.9", "top-1 %"},
                {}};
  for (const VariantReport* v : all_rows(r)) {
    const TextMetrics& m = v->texts[text];
    const auto kl = [](double x) { return fixed(x, 5); };
    t.rows.push_back({v->input.name, fixed(m.ppl, 3), signed_fixed(m.ppl_change_pct, 2),
                      or_na(m.kl_mean, kl, "baseline"), or_na(m.kl_p99, kl, "baseline"),
                      or_na(m.kl_p999, kl, "baseline"),
                      or_na(m.top1, [](double x) { return fixed(100 * x, 2); }, "baseline")});
  }
  return t;
}

ReportTable task_table(const Report& r, std::size_t task) {
  ReportTable t{"Task: " + r.baseline.tasks[task].task + " (" + std::to_string(r.baseline.tasks[task].items) + " items)",
                "Changes in accuracy points against the baseline with the paired bootstrap 95 % interval "
                "(n.s.: it includes 0); lost / gained: answers right in the baseline and wrong here, and "
                "the reverse.",
                {"variant", "acc %", "acc_norm %", "acc change", "acc_norm change", "lost / gained"},
                {}};
  for (const VariantReport* v : all_rows(r)) {
    const TaskMetrics& m = v->tasks[task];
    t.rows.push_back({v->input.name, fixed(100 * m.acc, 2), fixed(100 * m.acc_norm, 2),
                      change_cell(m.acc_change), change_cell(m.acc_norm_change),
                      m.acc_change ? std::to_string(m.lost) + " / " + std::to_string(m.gained) : "(baseline)"});
  }
  return t;
}

// One row per variant of a sweep: its place on the axis and every text's ppl and KL.
ReportTable sweep_table(const Report& r) {
  const ReportConfig::Sweep& sweep = *r.config.sweep;
  ReportTable t{"Sweep", "Each variant's " + sweep.label + " and how it was calibrated; perplexity and mean KL "
                "against the baseline per text.", {"variant", sweep.label, "calibration"}, {}};
  for (const NamedPath& text : r.config.texts) {
    t.headers.push_back(text.name + " ppl");
    t.headers.push_back(text.name + " KL");
  }
  for (std::size_t v = 0; v < r.variants.size(); ++v) {
    std::vector<std::string> row = {r.variants[v].input.name, fixed(sweep.x[v], 0), sweep.series[v]};
    for (const TextMetrics& m : r.variants[v].texts) {
      row.push_back(fixed(m.ppl, 3));
      row.push_back(fixed(*m.kl_mean, 5));
    }
    t.rows.push_back(row);
  }
  return t;
}

}  // namespace

std::vector<ReportTable> report_tables(const Report& r) {
  std::vector<ReportTable> tables = {summary(r), sizes(r)};
  if (r.config.sweep) tables.push_back(sweep_table(r));
  for (std::size_t i = 0; i < r.config.texts.size(); ++i) tables.push_back(text_table(r, i));
  for (std::size_t i = 0; i < r.baseline.tasks.size(); ++i) tables.push_back(task_table(r, i));
  return tables;
}

}  // namespace ptq
