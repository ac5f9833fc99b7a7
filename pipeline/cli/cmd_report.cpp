// ptq report --baseline DIR --variant [NAME=]PATH ... (--text NAME=FILE ... | --tasks FILE ...)
//            --out DIR
#include <cstdio>
#include <memory>

#include "calibrate/threads.hpp"
#include "io/output_path.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/report/report.hpp"

namespace ptq::cli {
namespace {

struct ReportFlags {
  std::string baseline, out, from;
  std::vector<std::string> variants, texts, tasks;
  ReportConfig config;
};

void run_report(ReportFlags& f) {
  ReportConfig& c = f.config;
  c.baseline = parse_named_path(f.baseline);
  if (!f.from.empty()) c.variants = variants_from(f.from, c.baseline.path);
  for (const std::string& v : f.variants) c.variants.push_back(parse_named_path(v));
  for (const std::string& t : f.texts) c.texts.push_back(parse_named_path(t));
  for (const std::string& t : f.tasks) c.tasks.emplace_back(t);
  c.validate();
  OutputFolder out(f.out, "--out");  // checked before any evaluation
  const ThreadScope threads(c.threads);
  const Report report = measure_report(c, report_progress_bars());
  write_report_files(report, out.staging());
  out.commit();
  for (const VariantReport& v : report.variants)
    std::printf("%-24s %-9s %s\n", v.input.name.c_str(),
                std::string(verdict_name(v.recommendation->verdict)).c_str(),
                v.recommendation->decided_by.c_str());
  std::printf("report -> %s/report.html\n", out.final_path().c_str());
}

void add_thresholds(CLI::App* cmd, Thresholds& t) {
  cmd->add_option("--task-deploy", t.task_deploy_pct,
                  "Deploy when the worst task's accuracy change (relative, %) is at least this")
      ->capture_default_str();
  cmd->add_option("--task-dont", t.task_dont_pct, "Don't deploy below this change (%)")->capture_default_str();
  cmd->add_option("--kl-deploy", t.kl_deploy, "Without tasks: deploy at most this mean KL on every text")
      ->capture_default_str();
  cmd->add_option("--kl-dont", t.kl_dont, "Without tasks: don't deploy above this mean KL")->capture_default_str();
  cmd->add_option("--ppl-deploy", t.ppl_deploy_pct,
                  "Perplexity change (%) that would say deploy (flags disagreement with tasks)")
      ->capture_default_str();
  cmd->add_option("--ppl-dont", t.ppl_dont_pct, "Perplexity change (%) that would say don't")
      ->capture_default_str();
}

}  // namespace

void add_report(CLI::App& app) {
  auto f = std::make_shared<ReportFlags>();
  CLI::App* cmd = app.add_subcommand(
      "report", "A baseline and its variants side by side, with a deploy / consider / don't "
                "recommendation each: report.html, report.md, report.json");
  cmd->add_option("--baseline", f->baseline, "[NAME=]FOLDER: the float model (its tokenizer reads --text)")
      ->required();
  cmd->add_option("--variant", f->variants,
                  "[NAME=]PATH, repeatable: any model ptq reads (HF, GGUF, GPTQ, AWQ, "
                  "compressed-tensors, bnb-nf4 folders, .gguf files)");
  cmd->add_option("--from", f->from,
                  "A ptq batch or ptq sweep output folder: its variants of this baseline (before any --variant)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--text", f->texts, "[NAME=]FILE, repeatable: text (or .ids tokens) to evaluate on");
  cmd->add_option("--tasks", f->tasks, "Multiple-choice task files (as ptq eval --tasks)");
  cmd->add_option("--limit", f->config.task_limit, "First N items of each task (0 = all)")->capture_default_str();
  cmd->add_option("--ctx", f->config.eval.ctx, "Window length in tokens")->capture_default_str();
  cmd->add_option("--max-windows", f->config.eval.max_windows, "First N windows of each text (0 = all)")
      ->capture_default_str();
  cmd->add_option("--serve-context", f->config.serve_context, "Serving estimate: context tokens")
      ->capture_default_str();
  cmd->add_option("--serve-batch", f->config.serve_batch, "Serving estimate: sequences")->capture_default_str();
  cmd->add_option("--llama-bench", f->config.llama_bench,
                  "llama.cpp's llama-bench: prompt and generation tokens/s of GGUF variants");
  cmd->add_option("--bootstrap", f->config.bootstrap_samples, "Bootstrap samples of the paired task intervals")
      ->capture_default_str();
  cmd->add_option("--seed", f->config.seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threads", f->config.threads, "Threads (0 = all cores)")->capture_default_str();
  add_thresholds(cmd, f->config.thresholds);
  cmd->add_option("--out", f->out, "Output folder (new or empty)")->required();
  cmd->callback([f] { run_report(*f); });
}

}  // namespace ptq::cli
