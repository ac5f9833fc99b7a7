#pragma once
// `ptq report`: a baseline and its variants side by side on every number a
// deploy decision needs (perplexity per text, KL and top-1 against the
// baseline, task accuracy with paired intervals and flipped answers, size,
// memory, speed), and a deploy / consider / don't recommendation per variant.
// Measuring (measure.cpp) is kept apart from deciding (recommend.cpp) and from
// writing (report_json, report_markdown, report_html), so each is tested alone.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/eval/eval.hpp"

namespace ptq {

struct NamedPath {
  std::string name;
  std::filesystem::path path;
};

// "NAME=PATH", or a bare PATH named after its last component
// ("out/rtn-w8/" -> "rtn-w8"): the spelling of ptq report, sweep and batch.
NamedPath parse_named_path(const std::string& text);

enum class Verdict { deploy, consider, dont };  // in order: a larger one is worse
std::string_view verdict_name(Verdict v);  // "deploy", "consider", "don't"

// When a variant is deployed, considered or refused. Task accuracy decides when
// tasks were given (the worst task's change relative to the baseline's, in %),
// unless that change is within noise (its interval includes 0) and the texts'
// KL says worse; KL alone without tasks. Perplexity has its own thresholds only
// to flag where it disagrees with the verdict.
struct Thresholds {
  double task_deploy_pct = -2.0;  // relative accuracy change at least this: deploy
  double task_dont_pct = -5.0;    // worse than this: don't; between: consider
  double kl_deploy = 0.03;        // mean KL (nats) on every text at most this: deploy
  double kl_dont = 0.10;          // above this on any text: don't
  double ppl_deploy_pct = 2.0;    // perplexity change at most this: deploy (for the flag)
  double ppl_dont_pct = 5.0;

  void validate() const;  // InputError naming the threshold
};

struct ReportConfig {
  NamedPath baseline;              // an HF folder (its tokenizer reads the texts)
  std::vector<NamedPath> variants;  // anything open_model reads
  std::vector<NamedPath> texts;     // text files (or .ids token files) by name
  std::vector<std::filesystem::path> tasks;
  int task_limit = 0;  // first N items of each task; 0 = all
  EvalConfig eval;     // ctx, max_windows
  int serve_context = 4096;  // the serving-memory estimate's context and batch
  int serve_batch = 1;
  std::optional<std::filesystem::path> llama_bench;  // llama.cpp's llama-bench
  int threads = 0;
  Thresholds thresholds;
  int bootstrap_samples = 2000;  // paired bootstrap of task accuracy changes
  std::uint64_t seed = 0;
  // A sweep's axis (ptq sweep): each variant's x (in variant order) and the
  // series it belongs to; report.html then draws every text's perplexity
  // against x, one line per series.
  struct Sweep {
    std::string label;
    std::vector<double> x;
    std::vector<std::string> series;
  };
  std::optional<Sweep> sweep;

  void validate() const;
};

struct TextMetrics {
  std::string text;
  double ppl = 0;
  double ppl_change_pct = 0;  // against the baseline's ppl on the same text
  // Against the baseline (absent for the baseline itself).
  std::optional<double> kl_mean, kl_p99, kl_p999, top1;
};

// A paired change in accuracy points (variant - baseline, x100) with its
// bootstrap 95 % interval over the same items.
struct PairedChange {
  double points = 0, low = 0, high = 0;
  bool significant() const { return low > 0 || high < 0; }
};

struct TaskMetrics {
  std::string task;
  int items = 0;
  double acc = 0, acc_norm = 0;
  std::optional<PairedChange> acc_change, acc_norm_change;  // absent for the baseline
  int lost = 0, gained = 0;  // items right in the baseline and wrong here, and the reverse (acc)
};

struct LayerError {
  int layer = 0;
  std::string linear;  // "q", "k", ..., "down"
  double weight_mse = 0;
};

struct Recommendation {
  Verdict verdict = Verdict::deploy;
  std::string decided_by;  // the metric, e.g. "arc_easy acc -6.2 %"
  bool significant = true;  // the deciding change's interval excludes 0 (tasks only)
  std::vector<std::string> flags;  // e.g. perplexity and tasks disagree
};

struct VariantReport {
  NamedPath input;
  std::string kind;  // "hf", "gguf", "gptq", "awq", "compressed-tensors", "bnb-nf4"
  std::uintmax_t model_bytes = 0;  // the weights' files (safetensors or GGUF)
  double bits_per_weight = 0;      // model_bytes * 8 over the baseline's parameters
  std::vector<TextMetrics> texts;
  std::vector<TaskMetrics> tasks;
  std::uint64_t eval_peak_bytes = 0;  // peak resident memory while this one was evaluated
  std::optional<double> quantize_seconds;       // from its run.json
  std::optional<std::uint64_t> quantize_peak_bytes;
  std::uint64_t serve_bytes = 0;                // estimate: weights + KV cache
  std::optional<double> prompt_tps, generation_tps;  // llama-bench, GGUF only
  std::string speed_note;  // why the speed columns are empty, when they are
  std::vector<LayerError> layers;  // from its quantized.h5, when it has one
  std::optional<Recommendation> recommendation;  // absent for the baseline
};

struct Report {
  ReportConfig config;
  std::int64_t parameters = 0;  // the baseline's
  VariantReport baseline;
  std::vector<VariantReport> variants;
};

// Called with a step's label, units done and units in all.
using ReportProgress = std::function<void(const std::string&, long, long)>;

Report measure_report(const ReportConfig& config, const ReportProgress& progress = {});

// Progress on stderr with the time left, a bar per step (pipeline/output/progress.hpp).
ReportProgress report_progress_bars();

// The verdict for one variant against the baseline (both measured).
Recommendation recommend(const VariantReport& variant, const Thresholds& thresholds);

// The paired change of `variant` against `baseline` (1 = right, 0 = wrong, per
// item, same order), with a seeded bootstrap over items.
PairedChange paired_change(const std::vector<char>& baseline, const std::vector<char>& variant,
                           int samples, std::uint64_t seed);

nlohmann::ordered_json report_json(const Report& report);
std::string report_markdown(const Report& report);
std::string report_html(const Report& report);

// The variants of earlier reports under `dir` (a ptq batch or ptq sweep output
// folder: every report.json below it) whose baseline is `baseline`, in the
// order found (sorted paths). InputError naming `dir` when there is none.
std::vector<NamedPath> variants_from(const std::filesystem::path& dir, const std::filesystem::path& baseline);

// report.json, report.md and report.html into `folder` (an OutputFolder's
// staging folder: the caller commits).
void write_report_files(const Report& report, const std::filesystem::path& folder);

}  // namespace ptq
