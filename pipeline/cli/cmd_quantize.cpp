// ptq quantize --model PATH (--recipe FILE | --method ... --bits ... --group ...)
//              [--calib ... | --stats FILE [--mix NAME=WEIGHT ...]] --out PATH
#include <cstdio>
#include <iostream>

#include "io/error.hpp"
#include "io/output_path.hpp"
#include "pipeline/cli/calib_flags.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/cli/device_flag.hpp"
#include "pipeline/cli/recipe_flags.hpp"
#include "pipeline/quantize/quantize_run.hpp"

namespace ptq::cli {

namespace {

struct QuantizeFlags {
  std::string model, out, recipe, load_scales, stats, device = "cpu", gpu_math = "tf32";
  std::vector<std::string> mix;
  RecipeFlags fields;  // every recipe key with a flag but the calibration ones
  CalibFlags calib;
  int threads = 0, batch_windows = 16;
  std::uint64_t stage_cache_mib = default_stage_cache_bytes >> 20;
  double checkpoint_seconds = 60.0, gpu_memory_gib = 0;
  bool resume = false, dry_run = false;
};

// The recipe file (if any), then every flag given on the command line on top.
Recipe build_recipe(const QuantizeFlags& f, const CLI::App& cmd) {
  Recipe r = f.recipe.empty() ? Recipe{} : load_recipe(f.recipe);
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  apply_recipe_flags(f.fields, cmd, r, KeySet::method);
  if (const auto why = r.resolve_format()) std::fprintf(stderr, "note: %s\n", why->c_str());
  r.apply_implied_defaults();
  apply_calib_flags(f.calib, cmd, r.calibration, r.sources);
  if (f.recipe.empty() && !given("--method"))
    throw input_error("ptq quantize", "--recipe FILE or --method " + method_names(), "neither");
  r.validate();
  check_given_keys_apply(r);
  if (given("--stats")) {
    if (given("--calib") || given("--calib-ids"))
      throw input_error("--stats", "cached statistics or --calib/--calib-ids, not both", "both");
    check_recipe_for_stats(r);
    r.sources.clear();  // the statistics file replaces any sources the recipe names
    return r;
  }
  if (given("--mix")) throw input_error("--mix", "--stats FILE to mix from", "no --stats");
  const ScaleSource scales = f.load_scales.empty() ? ScaleSource::search : ScaleSource::replay;
  if (r.needs_calibration(scales) && r.sources.empty())
    throw input_error("ptq quantize",
                      "calibration data for " + std::string(method_name(r.method)) +
                          " (--calib NAME=PATH[:WEIGHT] or --calib-ids FILE)",
                      "none");
  return r;
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto flags = std::make_shared<QuantizeFlags>();
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize the Linears of every decoder block (RTN, GPTQ, AWQ, W8A8, NF4)");
  auto& f = *flags;
  cmd->add_option("--model", f.model, "Hugging Face checkpoint folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", f.out, "Output folder (new or empty)")->required();
  cmd->add_option("--recipe", f.recipe, "Recipe YAML/JSON; flags below override its fields")
      ->check(CLI::ExistingFile);
  cmd->add_option("--load-scales", f.load_scales,
                  "Apply the folded scales (AWQ's or SmoothQuant's) of this quantized.h5 instead "
                  "of searching")
      ->check(CLI::ExistingFile);
  add_recipe_flags(*cmd, f.fields, KeySet::method);
  add_calib_flags(*cmd, f.calib);
  cmd->add_option(
         "--stats", f.stats,
         "GPTQ from `ptq calibrate` statistics, no forward pass (float-activation approximation)")
      ->check(CLI::ExistingFile);
  cmd->add_option(
      "--mix", f.mix,
      "With --stats: source weight NAME=WEIGHT (repeatable; default: the file's weights)");
  cmd->add_option("--threads", f.threads, "Threads (0 = all cores)");
  add_device_flag(*cmd, f.device);
  cmd->add_option("--gpu-math", f.gpu_math,
                  "GPU path (--device cuda): the block's GEMMs, attention and X^T X in tf32 "
                  "(TF32 products, float32 sums) or fp32")
      ->check(CLI::IsMember({"tf32", "fp32"}))
      ->capture_default_str();
  cmd->add_option("--gpu-memory", f.gpu_memory_gib,
                  "GPU path: plan within this many GiB of each GPU (the calibration stream "
                  "spills to host memory, stage inputs are recomputed); 0 = all that is free")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--batch-windows", f.batch_windows, "Calibration windows per block pass");
  cmd->add_option("--stage-cache-mib", f.stage_cache_mib,
                  "Keep a block stage's input (attention context, MLP hidden state) for all "
                  "windows up to this size; "
                  "larger ones are recomputed");
  cmd->add_flag("--resume", f.resume, "Continue an interrupted run from its per-block checkpoints");
  cmd->add_option(
      "--checkpoint-seconds", f.checkpoint_seconds,
      "Save the calibration activations for --resume at most this often (0 = after every block)");
  cmd->add_flag("--dry-run", f.dry_run,
                "Print the expected output size, peak memory and time; write nothing");
  cmd->callback([flags, cmd] {
    const auto& f = *flags;
    QuantizeJob job{.model = f.model,
                    .out = check_output_path(f.out, OutputKind::folder, "--out"),
                    .recipe = build_recipe(f, *cmd),
                    .threads = f.threads,
                    .resume = f.resume ? Resume::yes : Resume::no,
                    .batch_windows = f.batch_windows,
                    .output = {},
                    .cache_budget_bytes = f.stage_cache_mib << 20,
                    .checkpoint_seconds = f.checkpoint_seconds,
                    .load_scales = f.load_scales,
                    .stats = f.stats,
                    .mix = {}};
    job.output.calibration_windows = f.calib.window_record();
    for (const auto& spec : f.mix) job.mix.push_back(parse_mix_spec(spec));
    const DeviceUse device(f.device, f.gpu_math == "fp32" ? DeviceMath::fp32 : DeviceMath::tf32,
                           static_cast<std::uint64_t>(f.gpu_memory_gib * double(1 << 30)));
    if (f.dry_run) {
      std::cout << estimate_quantize(job).text();
      return;
    }
    QuantizeProgress progress{
        [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
    run_quantize(job, progress);
    std::fprintf(stderr, "wrote %s\n", f.out.c_str());
  });
}

}  // namespace ptq::cli
