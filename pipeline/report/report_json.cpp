// report.json: every measured number, schema "ptq-report" version 1
// (docs/report.md). Absent values are null.
#include <algorithm>
#include <fstream>

#include "io/error.hpp"
#include "pipeline/report/report.hpp"

namespace ptq {
namespace {

using Json = nlohmann::ordered_json;

template <class T>
Json or_null(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json change_json(const std::optional<PairedChange>& c) {
  if (!c) return nullptr;
  return {{"points", c->points}, {"low", c->low}, {"high", c->high}, {"significant", c->significant()}};
}

Json variant_json(const VariantReport& v) {
  Json j = {{"name", v.input.name},
            {"path", v.input.path.string()},
            {"kind", v.kind},
            {"model_bytes", v.model_bytes},
            {"bits_per_weight", v.bits_per_weight}};
  Json texts = Json::array();
  for (const TextMetrics& t : v.texts)
    texts.push_back({{"text", t.text},
                     {"ppl", t.ppl},
                     {"ppl_change_pct", t.ppl_change_pct},
                     {"kl_mean", or_null(t.kl_mean)},
                     {"kl_p99", or_null(t.kl_p99)},
                     {"kl_p999", or_null(t.kl_p999)},
                     {"top1", or_null(t.top1)}});
  j["texts"] = texts;
  Json tasks = Json::array();
  for (const TaskMetrics& t : v.tasks)
    tasks.push_back({{"task", t.task},
                     {"items", t.items},
                     {"acc", t.acc},
                     {"acc_norm", t.acc_norm},
                     {"acc_change", change_json(t.acc_change)},
                     {"acc_norm_change", change_json(t.acc_norm_change)},
                     {"lost", t.lost},
                     {"gained", t.gained}});
  j["tasks"] = tasks;
  j["eval_peak_bytes"] = v.eval_peak_bytes;
  j["quantize_seconds"] = or_null(v.quantize_seconds);
  j["quantize_peak_bytes"] = or_null(v.quantize_peak_bytes);
  j["serve_bytes_estimate"] = v.serve_bytes;
  j["prompt_tps"] = or_null(v.prompt_tps);
  j["generation_tps"] = or_null(v.generation_tps);
  if (!v.speed_note.empty()) j["speed_note"] = v.speed_note;
  Json layers = Json::array();
  for (const LayerError& l : v.layers)
    layers.push_back({{"layer", l.layer}, {"linear", l.linear}, {"weight_mse", l.weight_mse}});
  j["layers"] = layers;
  if (v.recommendation)
    j["recommendation"] = {{"verdict", verdict_name(v.recommendation->verdict)},
                           {"decided_by", v.recommendation->decided_by},
                           {"significant", v.recommendation->significant},
                           {"flags", v.recommendation->flags}};
  return j;
}

Json config_json(const ReportConfig& c) {
  const auto named = [](const std::vector<NamedPath>& list) {
    Json a = Json::array();
    for (const NamedPath& n : list) a.push_back({{"name", n.name}, {"path", n.path.string()}});
    return a;
  };
  Json tasks = Json::array();
  for (const auto& t : c.tasks) tasks.push_back(t.string());
  const Thresholds& t = c.thresholds;
  Json sweep = nullptr;
  if (c.sweep) sweep = {{"label", c.sweep->label}, {"x", c.sweep->x}, {"series", c.sweep->series}};
  return {{"texts", named(c.texts)},
          {"sweep", sweep},
          {"tasks", tasks},
          {"task_limit", c.task_limit},
          {"ctx", c.eval.ctx},
          {"max_windows", c.eval.max_windows},
          {"serve_context", c.serve_context},
          {"serve_batch", c.serve_batch},
          {"bootstrap_samples", c.bootstrap_samples},
          {"seed", c.seed},
          {"thresholds",
           {{"task_deploy_pct", t.task_deploy_pct},
            {"task_dont_pct", t.task_dont_pct},
            {"kl_deploy", t.kl_deploy},
            {"kl_dont", t.kl_dont},
            {"ppl_deploy_pct", t.ppl_deploy_pct},
            {"ppl_dont_pct", t.ppl_dont_pct}}}};
}

}  // namespace

nlohmann::ordered_json report_json(const Report& r) {
  Json variants = Json::array();
  for (const VariantReport& v : r.variants) variants.push_back(variant_json(v));
  return {{"schema", "ptq-report"},
          {"version", 1},
          {"config", config_json(r.config)},
          {"parameters", r.parameters},
          {"baseline", variant_json(r.baseline)},
          {"variants", variants}};
}

NamedPath parse_named_path(const std::string& text) {
  const auto eq = text.find('=');
  if (eq != std::string::npos && eq > 0) return {text.substr(0, eq), text.substr(eq + 1)};
  std::filesystem::path p(text);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  return {p.filename().string(), text};
}

std::vector<NamedPath> variants_from(const std::filesystem::path& dir, const std::filesystem::path& baseline) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.path().filename() == "report.json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<NamedPath> variants;
  for (const auto& file : files) {
    std::ifstream in(file);
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || j.value("schema", "") != "ptq-report") continue;
    std::error_code ec;
    if (!std::filesystem::equivalent(j["baseline"]["path"].get<std::string>(), baseline, ec)) continue;
    for (const auto& v : j["variants"]) variants.push_back({v["name"], v["path"].get<std::string>()});
  }
  if (variants.empty())
    throw input_error("--from " + dir.string(), "report.json files of ptq batch or ptq sweep with baseline " +
                          baseline.string(), "none");
  return variants;
}

}  // namespace ptq
