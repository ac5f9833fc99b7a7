// Measuring a report: the baseline once, then each variant on the same texts
// and tasks, against the baseline's distributions and answers.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>

#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/eval/tasks.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/output/folder_sizes.hpp"
#include "pipeline/output/progress.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/text_tokenizer.hpp"
#include "pipeline/report/llama_bench.hpp"
#include "pipeline/report/report.hpp"

namespace ptq {
namespace {

// A model as `ptq eval` runs it: with the int8 activations a W8A8 folder records.
struct Evaluated {
  Model model;
  std::optional<Int8Activations> activations;

  explicit Evaluated(const std::filesystem::path& path) : model(open_model(path)) {
    if (auto scheme = load_activation_quant(path, model.num_layers())) activations.emplace(std::move(*scheme));
  }
  const LinearInputTransform* transform() const { return activations ? &*activations : nullptr; }
};

// The baseline checkpoint's parameters, every tensor counted.
std::int64_t parameter_count(const std::filesystem::path& folder) {
  const Checkpoint checkpoint = Checkpoint::open(folder);
  std::int64_t n = 0;
  for (const TensorView* t : checkpoint.tensors()) n += t->numel();
  return n;
}

std::string kind_of(const std::filesystem::path& path) {
  if (gguf_model_file(path)) return "gguf";
  if (const auto format = packed_format_of(path))
    return std::string(output_format_info(*format).name);
  return "hf";
}

// The files holding the weights: the GGUF file, or a folder's safetensors.
std::uintmax_t model_bytes(const std::filesystem::path& path) {
  if (const auto gguf = gguf_model_file(path)) return std::filesystem::file_size(*gguf);
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
      total += entry.file_size();
  return total;
}

// Weights plus a float16 KV cache of `context` tokens for `batch` sequences.
std::uint64_t serve_bytes(const ModelConfig& c, std::uintmax_t weights, int context, int batch) {
  const std::uint64_t kv = 2ull * c.num_layers * c.num_kv_heads * c.head_dim * 2ull;
  return weights + kv * static_cast<std::uint64_t>(context) * static_cast<std::uint64_t>(batch);
}

// run.json's time and peak memory, and quantized.h5's per-Linear weight error,
// where the variant is a ptq output folder.
void read_run_records(const std::filesystem::path& path, int layers, VariantReport& v) {
  if (!std::filesystem::is_directory(path)) return;
  if (std::ifstream in(path / "run.json"); in) {
    const auto run = nlohmann::json::parse(in, nullptr, false);
    if (run.is_object() && run.contains("seconds")) v.quantize_seconds = run["seconds"].get<double>();
    if (run.is_object() && run.contains("peak_rss_bytes"))
      v.quantize_peak_bytes = run["peak_rss_bytes"].get<std::uint64_t>();
  }
  if (!std::filesystem::exists(path / "quantized.h5")) return;
  const H5Reader h5(path / "quantized.h5");
  for (int layer = 0; layer < layers; ++layer)
    for (const LinearSpec& spec : linear_specs) {
      const std::string group = linear_group_path({layer, spec.role});
      if (h5.has(group) && h5.has_attribute(group, "weight_mse"))
        v.layers.push_back({layer, std::string(linear_role_name(spec.role)),
                            h5.float_attribute(group, "weight_mse")});
    }
}

struct Inputs {
  std::vector<std::vector<std::int32_t>> texts;  // per config.texts
  std::vector<Task> tasks;
};

Inputs read_inputs(const ReportConfig& config, const Tokenizer& tokenizer) {
  Inputs in;
  for (const NamedPath& t : config.texts)
    in.texts.push_back(t.path.extension() == ".ids"
                           ? read_ids(t.path)
                           : tokenizer.encode(read_utf8_text_file(t.path)));
  for (const auto& task : config.tasks) in.tasks.push_back(load_task(task, config.task_limit));
  return in;
}

std::vector<char> correct(const Task& task, const TaskResult& r, bool norm) {
  std::vector<char> right(task.items.size());
  for (std::size_t i = 0; i < right.size(); ++i)
    right[i] = (norm ? r.scores[i].pick_norm() : r.scores[i].pick()) == task.items[i].gold;
  return right;
}

struct BaselineAnswers {
  std::vector<double> ppl;
  std::vector<std::vector<char>> right, right_norm;
};

class Measurer {
 public:
  Measurer(const ReportConfig& config, const ReportProgress& progress)
      : config_(config),
        progress_(progress),
        tokenizer_(load_text_tokenizer(config.baseline.path)),
        inputs_(read_inputs(config, tokenizer_)) {}

  // `model` (input opened) against `baseline`, or the baseline itself when
  // null; the caller restarts the memory peak before opening `model`.
  VariantReport measure(const NamedPath& input, const Evaluated& model, const Evaluated* baseline,
                        BaselineAnswers& answers) {
    VariantReport v;
    v.input = input;
    v.kind = kind_of(input.path);
    v.model_bytes = model_bytes(input.path);
    for (std::size_t t = 0; t < config_.texts.size(); ++t)
      v.texts.push_back(text_metrics(model, input.name, baseline, t, answers));
    for (std::size_t t = 0; t < inputs_.tasks.size(); ++t)
      v.tasks.push_back(task_metrics(model, input.name, baseline, t, answers));
    v.eval_peak_bytes = window_peak_rss_bytes();
    read_run_records(input.path, model.model.num_layers(), v);
    v.serve_bytes = serve_bytes(model.model.config(), v.model_bytes, config_.serve_context,
                                config_.serve_batch);
    speed(input, v);
    return v;
  }

 private:
  void step(const std::string& label, long done, long total) const {
    if (progress_) progress_(label, done, total);
  }

  TextMetrics text_metrics(const Evaluated& m, const std::string& name, const Evaluated* baseline,
                           std::size_t t, BaselineAnswers& answers) const {
    EvalConfig eval = config_.eval;
    eval.input_transform = m.transform();
    const std::string label = name + " " + config_.texts[t].name;
    const EvalResult r = evaluate(m.model, inputs_.texts[t], eval, baseline ? &baseline->model : nullptr,
                                  [&](int done, int total) { step(label, done, total); });
    if (!baseline) answers.ppl.push_back(r.ppl);
    return {.text = config_.texts[t].name,
            .ppl = r.ppl,
            .ppl_change_pct = 100.0 * (r.ppl / answers.ppl[t] - 1.0),
            .kl_mean = r.kl,
            .kl_p99 = r.kl_p99,
            .kl_p999 = r.kl_p999,
            .top1 = r.top1};
  }

  TaskMetrics task_metrics(const Evaluated& m, const std::string& name, const Evaluated* baseline,
                           std::size_t t, BaselineAnswers& answers) const {
    const Task& task = inputs_.tasks[t];
    TaskEvalConfig c;
    c.input_transform = m.transform();
    const std::string label = name + " " + task.name;
    const TaskResult r = evaluate_task(m.model, nullptr, tokenizer_, task, c,
                                       [&](std::size_t done, std::size_t total) {
                                         step(label, static_cast<long>(done), static_cast<long>(total));
                                       });
    TaskMetrics out;
    out.task = task.name;
    out.items = r.items;
    out.acc = r.acc;
    out.acc_norm = r.acc_norm;
    const std::vector<char> right = correct(task, r, false), right_norm = correct(task, r, true);
    if (!baseline) {
      answers.right.push_back(right);
      answers.right_norm.push_back(right_norm);
      return out;
    }
    const std::uint64_t seed = config_.seed + t;
    out.acc_change = paired_change(answers.right[t], right, config_.bootstrap_samples, seed);
    out.acc_norm_change = paired_change(answers.right_norm[t], right_norm, config_.bootstrap_samples, seed);
    for (std::size_t i = 0; i < right.size(); ++i) {
      out.lost += answers.right[t][i] && !right[i];
      out.gained += !answers.right[t][i] && right[i];
    }
    return out;
  }

  void speed(const NamedPath& input, VariantReport& v) const {
    const auto gguf = gguf_model_file(input.path);
    if (!gguf) {
      v.speed_note = "not GGUF";
    } else if (!config_.llama_bench) {
      v.speed_note = "no --llama-bench";
    } else {
      const LlamaBenchResult r = run_llama_bench(*config_.llama_bench, *gguf, config_.threads);
      v.prompt_tps = r.prompt_tps;
      v.generation_tps = r.generation_tps;
    }
  }

  const ReportConfig& config_;
  const ReportProgress& progress_;
  Tokenizer tokenizer_;
  Inputs inputs_;
};

void require_exists(const std::filesystem::path& path, const std::string& what) {
  if (!std::filesystem::exists(path)) throw input_error(what + " " + path.string(), "an existing path", "nothing there");
}

}  // namespace

void ReportConfig::validate() const {
  eval.validate();
  thresholds.validate();
  require_exists(baseline.path, "--baseline");
  if (variants.empty()) throw input_error("ptq report", "at least one --variant (or --from)", "none");
  std::vector<std::string> names = {baseline.name};
  for (const NamedPath& v : variants) {
    require_exists(v.path, "--variant");
    if (std::find(names.begin(), names.end(), v.name) != names.end())
      throw input_error("--variant " + v.path.string(), "a name not given before (NAME=PATH)",
                        "\"" + v.name + "\" again");
    names.push_back(v.name);
  }
  if (texts.empty() && tasks.empty()) throw input_error("ptq report", "--text or --tasks", "neither");
  for (const NamedPath& t : texts) require_exists(t.path, "--text");
  for (const auto& t : tasks) require_exists(t, "--tasks");
  if (serve_context < 1 || serve_batch < 1)
    throw input_error("--serve-context / --serve-batch", "at least 1",
                      std::to_string(serve_context) + " / " + std::to_string(serve_batch));
  if (bootstrap_samples < 100)
    throw input_error("--bootstrap", "at least 100 samples", std::to_string(bootstrap_samples));
}

ReportProgress report_progress_bars() {
  auto bar = std::make_shared<std::unique_ptr<ProgressReporter>>();
  auto label = std::make_shared<std::string>();
  return [bar, label](const std::string& step, long done, long total) {
    if (step != *label) *bar = std::make_unique<ProgressReporter>(*label = step);
    (*bar)->update(done, total);
  };
}

void write_report_files(const Report& report, const std::filesystem::path& folder) {
  write_text_atomic(folder / "report.json", report_json(report).dump(1) + "\n");
  write_text_atomic(folder / "report.md", report_markdown(report));
  write_text_atomic(folder / "report.html", report_html(report));
}

Report measure_report(const ReportConfig& config, const ReportProgress& progress) {
  config.validate();
  Measurer measurer(config, progress);
  BaselineAnswers answers;
  Report report;
  report.config = config;
  restart_peak_rss();
  const Evaluated baseline(config.baseline.path);  // kept open: the variants' KL and answers
  report.baseline = measurer.measure(config.baseline, baseline, nullptr, answers);
  report.parameters = parameter_count(config.baseline.path);
  for (const NamedPath& v : config.variants) {
    restart_peak_rss();
    const Evaluated model(v.path);
    report.variants.push_back(measurer.measure(v, model, &baseline, answers));
    report.variants.back().recommendation = recommend(report.variants.back(), config.thresholds);
  }
  const auto bits = [&](VariantReport& v) {
    v.bits_per_weight = 8.0 * static_cast<double>(v.model_bytes) / static_cast<double>(report.parameters);
  };
  bits(report.baseline);
  for (VariantReport& v : report.variants) bits(v);
  return report;
}

}  // namespace ptq
