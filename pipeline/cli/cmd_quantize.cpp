// ptq quantize --model PATH (--recipe FILE | --method ... --bits ... --group ...)
//              [--calib ... | --stats FILE [--mix NAME=WEIGHT ...]] --out PATH
#include <cstdio>
#include <iostream>

#include "io/error.hpp"
#include "pipeline/cli/calib_flags.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/quantize_run.hpp"

namespace ptq::cli {

namespace {

struct QuantizeFlags {
  std::string model, out, recipe, method, group, scaling, load_scales, stats;
  std::vector<std::string> mix;
  CalibFlags calib;
  std::string act_granularity;
  int bits = 4, threads = 0, batch_windows = 16, awq_search_windows = 16, nf4_block = 64;
  std::uint64_t stage_cache_mib = default_stage_cache_bytes >> 20;
  double damp = 0.01, smoothquant = 0.5, act_percentile = 100.0, checkpoint_seconds = 60.0;
  bool act_order = false, sym = false, no_awq_clip = false, static_groups = false, resume = false, dry_run = false;
};

// The recipe file (if any), then every flag given on the command line on top.
Recipe build_recipe(const QuantizeFlags& f, const CLI::App& cmd) {
  Recipe r = f.recipe.empty() ? Recipe{} : load_recipe(f.recipe);
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  if (given("--method")) r.method = parse_method(f.method, "--method");
  if (given("--scaling")) r.scaling = parse_scaling(f.scaling, "--scaling");
  if (given("--no-awq-clip")) r.awq_clip = AwqClipMode::None;
  if (given("--awq-search-windows")) r.awq_search_windows = f.awq_search_windows;
  if (given("--bits")) r.spec.bits = f.bits;
  if (given("--group")) set_granularity(r.spec, f.group, "--group");
  if (given("--sym")) r.spec.symmetry = Symmetry::Symmetric;
  if (given("--act-order")) r.order = ColumnOrder::ActivationOrder;
  if (given("--static-groups")) r.group_grids = GroupGrids::Static;
  if (given("--damp")) r.damp = f.damp;
  if (given("--smoothquant")) r.smoothquant = SmoothQuantConfig{f.smoothquant};
  if (given("--act-granularity")) r.act_granularity = parse_act_granularity(f.act_granularity, "--act-granularity");
  if (given("--act-percentile")) r.act_percentile = f.act_percentile;
  if (given("--nf4-block")) r.nf4.block_size = f.nf4_block;
  r.apply_implied_defaults();
  apply_calib_flags(f.calib, cmd, r.calibration, r.sources);
  if (f.recipe.empty() && !given("--method"))
    throw input_error("ptq quantize", "--recipe FILE or --method " + method_names(), "neither");
  r.validate();
  if (given("--stats")) {
    if (given("--calib") || given("--calib-ids"))
      throw input_error("--stats", "cached statistics or --calib/--calib-ids, not both", "both");
    check_recipe_for_stats(r);
    r.sources.clear();  // the statistics file replaces any sources the recipe names
    return r;
  }
  if (given("--mix")) throw input_error("--mix", "--stats FILE to mix from", "no --stats");
  // Replayed scales need no activations unless GPTQ, a refit or static activation scales do.
  const bool replayed_rtn = !f.load_scales.empty() && !r.needs_statistics() &&
                            !(r.method == Method::W8A8 && r.act_granularity == ActGranularity::Tensor);
  if (r.needs_calibration() && r.sources.empty() && !replayed_rtn)
    throw input_error("ptq quantize", "calibration data for " + std::string(method_name(r.method)) +
                      " (--calib NAME=PATH[:WEIGHT] or --calib-ids FILE)", "none");
  return r;
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto flags = std::make_shared<QuantizeFlags>();
  auto* cmd = app.add_subcommand("quantize", "Quantize the Linears of every decoder block (RTN, GPTQ, AWQ, W8A8, NF4)");
  auto& f = *flags;
  cmd->add_option("--model", f.model, "Hugging Face checkpoint folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", f.out, "Output folder (new or empty)")->required();
  cmd->add_option("--recipe", f.recipe, "Recipe YAML/JSON; flags below override its fields")->check(CLI::ExistingFile);
  cmd->add_option("--method", f.method, method_names() + " (awq: AWQ scales and clip, then RTN)");
  cmd->add_option("--scaling", f.scaling,
                  "none, awq or smoothquant: fold AWQ's scales (and clip) or SmoothQuant's scales in before rtn/gptq");
  cmd->add_flag("--no-awq-clip", f.no_awq_clip, "AWQ: skip the clipping search");
  cmd->add_option("--awq-search-windows", f.awq_search_windows,
                  "AWQ: windows compared in the attention/MLP scale searches (0 = all, as the reference)");
  cmd->add_option("--load-scales", f.load_scales, "Apply the AWQ scales/clips of this quantized.h5 instead of searching")
      ->check(CLI::ExistingFile);
  cmd->add_option("--bits", f.bits, "Bits per weight (2..8)");
  cmd->add_option("--group", f.group, "Group size, 'channel' or 'tensor'");
  cmd->add_flag("--sym", f.sym, "Symmetric grid");
  cmd->add_flag("--act-order", f.act_order, "GPTQ: quantize columns by descending Hessian diagonal");
  cmd->add_flag("--static-groups", f.static_groups, "GPTQ: group grids from the original weights");
  cmd->add_option("--damp", f.damp, "GPTQ damping, fraction of the mean Hessian diagonal");
  cmd->add_option("--smoothquant", f.smoothquant,
                  "w8a8 or --scaling smoothquant: SmoothQuant migration strength alpha in [0, 1] (default 0.5)");
  cmd->add_option("--act-granularity", f.act_granularity, "w8a8: int8 activations per token (dynamic) or tensor (static)")
      ->check(CLI::IsMember({"token", "tensor"}));
  cmd->add_option("--act-percentile", f.act_percentile, "w8a8 tensor: static scale from this percentile of |x|");
  cmd->add_option("--nf4-block", f.nf4_block, "nf4: weights per absmax block");
  add_calib_flags(*cmd, f.calib);
  cmd->add_option("--stats", f.stats,
                  "GPTQ from `ptq calibrate` statistics, no forward pass (float-activation approximation)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--mix", f.mix, "With --stats: source weight NAME=WEIGHT (repeatable; default: the file's weights)");
  cmd->add_option("--threads", f.threads, "Threads (0 = all cores)");
  cmd->add_option("--batch-windows", f.batch_windows, "Calibration windows per block pass");
  cmd->add_option("--stage-cache-mib", f.stage_cache_mib,
                  "Keep a block stage's input (attention context, MLP hidden state) for all windows up to this size; "
                  "larger ones are recomputed");
  cmd->add_flag("--resume", f.resume, "Continue an interrupted run from its per-block checkpoints");
  cmd->add_option("--checkpoint-seconds", f.checkpoint_seconds,
                  "Save the calibration activations for --resume at most this often (0 = after every block)");
  cmd->add_flag("--dry-run", f.dry_run, "Print the expected output size, peak memory and time; write nothing");
  cmd->callback([flags, cmd] {
    const auto& f = *flags;
    QuantizeJob job{f.model, f.out, build_recipe(f, *cmd), f.threads, f.resume, f.batch_windows, {},
                    f.stage_cache_mib << 20, f.checkpoint_seconds, f.load_scales, f.stats, {}};
    for (const auto& spec : f.mix) job.mix.push_back(parse_mix_spec(spec));
    if (f.dry_run) {
      std::cout << estimate_quantize(job).text();
      return;
    }
    QuantizeProgress progress{[](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }};
    run_quantize(job, progress);
    std::fprintf(stderr, "wrote %s\n", f.out.c_str());
  });
}

}  // namespace ptq::cli
