// ptq sweep --model M --calib NAME=PATH[:W] ... --shares 0,30,50,70,100 --recipe R
//           --eval NAME=FILE ... [--tasks F ...] --out DIR
#include <cstdio>
#include <memory>

#include "calibrate/threads.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/sweep/sweep.hpp"

namespace ptq::cli {

void add_sweep(CLI::App& app) {
  struct Flags {
    std::string model, recipe, format, out;
    std::vector<std::string> calib, evals, tasks;
    SweepConfig config;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "sweep", "Calibration-mix experiment: the last --calib source's share over --shares, one recipe, "
               "every mix evaluated and reported with the quality-per-text curve");
  cmd->add_option("--model", f->model, "Hugging Face checkpoint folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--calib", f->calib, "NAME=PATH[:WEIGHT], two or more; the shares move the last one")->required();
  cmd->add_option("--shares", f->config.shares, "Percent of the last source, e.g. 0,30,50,70,100")
      ->required()
      ->delimiter(',');
  cmd->add_option("--exact", f->config.exact,
                  "Shares also quantized sequentially on the mixed windows (methods that use statistics)")
      ->delimiter(',');
  cmd->add_option("--recipe", f->recipe, "Recipe YAML")->required()->check(CLI::ExistingFile);
  cmd->add_option("--format", f->format, "Output format of every variant (default: the recipe's)");
  cmd->add_option("--eval", f->evals, "[NAME=]FILE, repeatable: text or .ids to evaluate on");
  cmd->add_option("--tasks", f->tasks, "Multiple-choice task files");
  cmd->add_option("--limit", f->config.report.task_limit, "First N items of each task (0 = all)");
  cmd->add_option("--max-windows", f->config.report.eval.max_windows, "First N windows of each text (0 = all)");
  cmd->add_option("--threads", f->config.threads, "Threads (0 = all cores)");
  cmd->add_option("--out", f->out, "Output folder (new or empty)")->required();
  cmd->callback([f] {
    SweepConfig& c = f->config;
    c.model = f->model;
    for (const std::string& s : f->calib) c.sources.push_back(parse_calib_spec(s));
    for (const std::string& e : f->evals) c.report.texts.push_back(parse_named_path(e));
    for (const std::string& t : f->tasks) c.report.tasks.emplace_back(t);
    c.recipe = load_recipe(f->recipe);
    if (!f->format.empty()) {
      c.recipe.format = parse_output_format(f->format, "--format");
      c.recipe.format_given = true;
    }
    c.recipe.resolve_format();
    c.recipe.apply_implied_defaults();
    c.recipe.sources = c.sources;
    c.recipe.validate();
    check_given_keys_apply(c.recipe);
    const ThreadScope threads(c.threads);
    run_sweep(c, f->out, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
    std::printf("sweep -> %s/report/report.html\n", f->out.c_str());
  });
}

}  // namespace ptq::cli
