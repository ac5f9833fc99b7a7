#include "pipeline/quantize/quantize_run.hpp"

#include <chrono>
#include <cstdio>
#include <future>

#include "algorithms/backend.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "algorithms/quantized_weight.hpp"
#include "calibrate/model.hpp"
#include "calibrate/tensor_names.hpp"
#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/output_path.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/gguf_types.hpp"
#include "pipeline/output/gguf_linear.hpp"
#include "pipeline/output/progress.hpp"
#include "pipeline/quantize/experts.hpp"
#include "pipeline/quantize/gguf_mix.hpp"
#include "pipeline/quantize/linear_mix.hpp"
#include "pipeline/quantize/quantize_device.hpp"
#include "pipeline/quantize/smoothing.hpp"
#include "pipeline/quantize/w8a8.hpp"
#include "pipeline/recipe/provenance.hpp"
#include "pipeline/recipe/text_tokenizer.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

std::filesystem::path checkpoint_dir(const std::filesystem::path& out) {
  auto dir = out;
  dir += ".checkpoints";
  return dir;
}

std::int32_t eos_of(const ModelConfig& config, const Tokenizer& tokenizer) {
  if (!config.eos_token_ids.empty()) return config.eos_token_ids.front();
  if (auto eos = tokenizer.eos_id()) return *eos;
  throw input_error("config.json",
                    "eos_token_id (documents in text calibration sources are joined with it)",
                    "none");
}

// Formats that cannot hold the model, refused before any work: a GGUF file's
// metadata is built once now so that its checks (an architecture llama.cpp
// names, a vocabulary its loader accepts) fail before hours of quantization.
void refuse_unwritable(const std::filesystem::path& model, const ModelConfig& c,
                       const Recipe& recipe) {
  require_expert_support(c, recipe);
  if (recipe.format == OutputFormat::gguf) gguf_metadata(model, c, {});
  // AWQ into GGUF rounds each Linear on the uniform grid of its tensor's type.
  if (recipe.format == OutputFormat::gguf && recipe.method == Method::Awq)
    for (int layer = 0; layer < c.num_layers; ++layer)
      for (const LinearKey& key : block_linears(c, layer)) {
        const GgmlGrid grid = gguf_linear_grid(recipe, c, layer, key.role);
        if (!ggml_uniform_spec(grid))
          throw input_error(linear_key_text(key) + " under gguf_type " + recipe.gguf_type,
                            "a type AWQ rounds onto (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)",
                            std::string(ggml_grid_info(grid).name));
      }
  // compressed-tensors' mix chooses a grid per Linear; a fused module has one.
  if (recipe.format == OutputFormat::compressed_tensors && recipe.chooses_mix() &&
      has_fused_linears(c))
    throw input_error(
        c.model_type + " config.json: model_type",
        "a family whose Linears are stored one per module, for a compressed-tensors mix",
        "\"" + c.model_type + "\", which stores q/k/v and gate/up fused");
}

// Measured single-precision GEMM rate on this machine, the way the forward
// runs its GEMMs (parallel_gemm), for the time estimate.
double measured_gflops() {
  const int n = 512;
  const MatrixRM a = MatrixRM::Ones(n, n), b = MatrixRM::Ones(n, n);
  MatrixRM c(n, n);
  const auto t0 = Clock::now();
  const int reps = 8;
  for (int r = 0; r < reps; ++r) parallel_gemm(a, b, GemmOp::plain, c, GemmOutput::overwrite);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 2.0 * n * n * n * reps / s / 1e9;
}

// Step "scale", replayed: the folded scales of every layer stored in `path` (a quantized.h5).
std::vector<BlockScales> load_scales(const std::filesystem::path& path, const Model& model,
                                     const Recipe& recipe) {
  if (!recipe.folds_scales())
    throw input_error("--load-scales " + path.string(),
                      "a recipe that folds scales (method awq, scaling awq or smoothquant, w8a8 "
                      "with smoothquant)",
                      "method " + std::string(method_name(recipe.method)) + " without scaling");
  if (!std::filesystem::is_regular_file(path))
    throw input_error("--load-scales " + path.string(), "a quantized.h5 file", "no such file");
  const H5Reader in(path);
  std::vector<BlockScales> blocks;
  for (int layer = 0; layer < model.num_layers(); ++layer)
    blocks.push_back(read_block_scales(in, layer, model.config(), recipe.spec));
  return blocks;
}

}  // namespace

CalibrationSet load_calibration(const std::filesystem::path& model,
                                std::span<const CalibSourceSpec> sources,
                                const CalibConfig& config) {
  bool needs_tokenizer = false;
  for (const auto& s : sources) needs_tokenizer |= s.path.extension() != ".ids";
  const ModelConfig model_config = load_model_config(model);
  CalibrationSet set;
  if (needs_tokenizer) {
    const Tokenizer tokenizer = load_text_tokenizer(model);
    set = build_calibration_set(sources, config, &tokenizer, eos_of(model_config, tokenizer));
  } else {
    set = build_calibration_set(sources, config, nullptr, 0);
  }
  check_window_ids(set, model_config.vocab_size);
  return set;
}

std::string QuantizeEstimate::text() const {
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "output size  %.1f MiB\npeak memory  %.1f MiB (approx., with the mapped checkpoint's pages)\n"
      "allocated    %.1f MiB (approx., without them; calibration activations %.1f MiB)\n"
      "time         %.0f s (approx., from a GEMM probe%s)\n",
      output_bytes / 1048576.0, peak_bytes / 1048576.0, allocated_bytes / 1048576.0,
      calibration_bytes / 1048576.0, seconds,
      device_bytes > 0 ? " on the GPU: its compute, not the host's reading and writing" : "");
  std::string text = buf;
  if (device_bytes > 0) {
    std::snprintf(buf, sizeof buf, "GPU memory   %.1f MiB (approx., the GPU path's arrays%s)\n",
                  device_bytes / 1048576.0,
                  devices > 1 ? (" on each of " + std::to_string(devices) + " GPUs").c_str() : "");
    text += buf;
  }
  return text;
}

namespace {

struct ModelSizes {
  double linear_params = 0;  // all quantized Linears
  double groups = 0;         // quantization groups over all of them
  double other_bytes = 0;    // checkpoint bytes of everything else
  double checkpoint_bytes = 0;
};

ModelSizes model_sizes(const ModelConfig& c, const Checkpoint& ckpt, const QuantSpec& spec) {
  ModelSizes m;
  m.linear_params = double(block_linear_weights(c)) * c.num_layers;
  m.groups = spec.granularity == Granularity::Group ? m.linear_params / spec.group_size
                                                    : m.linear_params / c.hidden_size;
  m.checkpoint_bytes = static_cast<double>(ckpt.total_bytes());
  m.other_bytes = m.checkpoint_bytes;
  for (int l = 0; l < c.num_layers; ++l)
    for (LinearRole r : all_linear_roles) {
      const LinearStorage stored = linear_storage(c, r);
      if (stored.first_row != 0) continue;  // a fused module is counted with its first part
      if (const auto* t = ckpt.find(block_tensor_name(l, std::string(stored.module) + ".weight")))
        m.other_bytes -= static_cast<double>(t->bytes.size());
    }
  return m;
}

// Bytes of one float activation row per token of every block input at once:
// what AWQ's search keeps for all windows (q/k/v, o, gate/up and down inputs).
double awq_feature_bytes_per_token(const ModelConfig& c) {
  double features = 0.0;
  for (LinearInput input : all_linear_inputs) features += stage_input_bytes(c, input, 1);
  return features;
}

// Memory of the calibration side at its peak (docs/quantize.md, "Staging"):
// the windows' residual stream, the larger kept stage input (context or MLP
// hidden state, never both) or AWQ's features, one batch's temporaries and
// the Hessians of the widest group. W8A8 keeps only the stream and a batch;
// RTN has none of it.
double calibration_bytes(const QuantizeJob& job, const ModelConfig& c) {
  if (!job.recipe.needs_calibration()) return 0.0;
  const double widest = std::max(c.hidden_size, c.intermediate_size);
  // Two [in, in] doubles at a time: XᵀX and H as H is formed, then H and GPTQ's factor of it.
  const bool float_target = job.recipe.target == RoundingTarget::FloatOutputs;
  // Target float_outputs: and X~^T (X - X~) beside them.
  const double hessian_bytes = widest * widest * 8 * (float_target ? 3 : 2);
  // --stats: no activations; the statistics file is held whole (its size, uncompressed).
  if (!job.stats.empty()) return double(std::filesystem::file_size(job.stats)) + hessian_bytes;
  const auto tokens = std::int64_t{job.recipe.calibration.samples} * job.recipe.calibration.seqlen;
  const StageCaches caches = stage_caches(c, tokens, job.cache_budget_bytes);
  double kept = 0.0;
  if (caches.context == CachePolicy::keep)
    kept = double(stage_input_bytes(c, LinearInput::attention_out, tokens));
  if (caches.hidden == CachePolicy::keep)
    kept = std::max(kept, double(stage_input_bytes(c, LinearInput::mlp_hidden, tokens)));
  if (float_target) kept *= 2;  // the float block keeps its own beside them
  const double batch_tokens = double(std::min(job.batch_windows, job.recipe.calibration.samples)) *
                              job.recipe.calibration.seqlen;
  // normed input and x copy [batch, hidden]; gate and up [batch, intermediate] (or q/k/v/context)
  const double batch_bytes = batch_tokens * 4 * (2.0 * widest + 3.0 * c.hidden_size);
  // Target float_outputs: the float model's stream at the block input and after its attention.
  const double stream = double(tokens) * c.hidden_size * 4 * (float_target ? 3 : 1);
  if (job.recipe.method == Method::W8A8) return stream + batch_bytes;
  if (job.recipe.uses_awq()) kept = std::max(kept, double(tokens) * awq_feature_bytes_per_token(c));
  // A measured GGUF mix: the probe windows' float logits and their stream.
  const double probe_tokens = double(job.recipe.mix.windows) * job.recipe.calibration.seqlen;
  const double probe =
      job.recipe.measures_mix_costs() ? probe_tokens * (c.vocab_size + c.hidden_size) * 4 : 0.0;
  return stream + kept + batch_bytes + hessian_bytes + probe;
}

// Matmul FLOPs per token of one block's Linears reading `input`.
double linear_flops(const ModelConfig& c, LinearInput input) {
  double f = 0.0;
  for (const auto& spec : linear_specs)
    if (spec.input == input)
      f += 2.0 * linear_out_features(c, spec.role) * linear_in_features(c, spec.role);
  return f;
}

// A measured GGUF mix (gguf_type auto): each Linear rounded at every candidate
// type, and the forward of the KL probe windows from each tensor's block on
// (half the model on average, and the head) once per measured KL.
double gguf_mix_flops(const Recipe& r, const ModelConfig& c,
                      double rounding, double forward_per_token) {
  if (!r.measures_mix_costs()) return 0.0;
  const double candidates = double(r.mix_candidates().size());
  const double kls = r.mix.predictor == MixPredictor::kl ? candidates : 1.0;
  const double probe_tokens = double(r.mix.windows) * r.calibration.seqlen;
  const double head = 2.0 * c.vocab_size * c.hidden_size;
  const double tensors = double(linear_role_count) * c.num_layers + 2;
  return (r.method == Method::Gptq ? rounding * candidates : 0.0) +
         tensors * kls * probe_tokens * (forward_per_token / 2 + head);
}

// Target float_outputs: the float block's pass beside the quantized one (and
// what it recomputes, passed in float_pass), X~^T (X - X~) for each input, its
// correction (an [in, in] factor and solve) and each Linear's W M^T.
double float_target_flops(const Recipe& r, const ModelConfig& c, double float_pass,
                          double cross_per_block) {
  if (r.target != RoundingTarget::FloatOutputs) return 0.0;
  double solves = 0.0;
  for (LinearInput input : all_linear_inputs) {
    const double in = input_features(c, input);
    solves += in * in * in * 4 / 3;
  }
  for (LinearRole role : all_linear_roles) {
    const double in = linear_in_features(c, role);
    solves += 2.0 * in * in * linear_out_features(c, role);
  }
  return float_pass + (cross_per_block * 2 + solves) * c.num_layers;
}

// Forward FLOPs of the staged quantization (one pass of the Linears and the
// attention per block, plus what a stage input recomputed for its residual
// add costs again) and of the XᵀX products and GPTQ itself.
double estimate_flops(const QuantizeJob& job, const ModelConfig& c, const ModelSizes& m) {
  if (!job.recipe.needs_calibration()) return 0.0;
  const double widest = std::max(c.hidden_size, c.intermediate_size);
  const double gptq = m.linear_params * widest * 2;
  if (!job.stats.empty()) return gptq;  // no forward pass
  const auto seqlen = job.recipe.calibration.seqlen;
  const double tokens = double(job.recipe.calibration.samples) * seqlen;
  const double attention = 2.0 * seqlen * c.num_heads * c.head_dim;  // per token: causal QKᵀ and PV
  const double float_pass =
      (2.0 * m.linear_params / c.num_layers + attention) * tokens * c.num_layers;
  if (job.recipe.method == Method::W8A8) {  // a float pass to smooth, another for static scales
    const bool both =
        job.recipe.smoothquant && job.recipe.act_granularity == ActGranularity::Tensor;
    return float_pass * (both ? 2.0 : 1.0);
  }
  const StageCaches caches =
      stage_caches(c, static_cast<std::int64_t>(tokens), job.cache_budget_bytes);
  double recomputed = 0.0;  // per token and block
  if (caches.context == CachePolicy::recompute)
    recomputed += linear_flops(c, LinearInput::attention_in) + attention;
  if (caches.hidden == CachePolicy::recompute) recomputed += linear_flops(c, LinearInput::mlp_in);
  double xtx = 0.0;
  for (LinearRole r : {LinearRole::q, LinearRole::o, LinearRole::gate, LinearRole::down})
    xtx += double(linear_in_features(c, r)) * linear_in_features(c, r);
  const double per_block_token = attention + recomputed + xtx;
  return 2.0 * m.linear_params * tokens + per_block_token * tokens * c.num_layers + gptq +
         // The float block recomputes what it does not keep, as the quantized side.
         float_target_flops(job.recipe, c, float_pass + recomputed * tokens * c.num_layers,
                            xtx * tokens) +
         gguf_mix_flops(job.recipe, c, gptq, float_pass / tokens);
}

// The block Linears in the output: float16 dequantized weights, uint8 codes
// and float scales and int zeros in the record; packed, the code bits and
// about 4 bytes of scale (and zero or g_idx share) per group.
double estimated_linear_bytes(const Recipe& r, const ModelSizes& m) {
  if (r.format == OutputFormat::dequantized) return m.linear_params * 3 + m.groups * 8;
  const int bits = r.method == Method::Nf4 ? 4 : r.method == Method::W8A8 ? 8 : r.spec.bits;
  const double groups = r.method == Method::Nf4 ? m.linear_params / r.nf4.block_size : m.groups;
  return m.linear_params * bits / 8.0 + groups * 4;
}

}  // namespace

QuantizeEstimate estimate_quantize(const QuantizeJob& job) {
  const ModelConfig c = load_model_config(job.model);
  refuse_unwritable(job.model, c, job.recipe);
  const ModelSizes m = model_sizes(c, Checkpoint::open(job.model), job.recipe.spec);
  QuantizeEstimate e;
  e.output_bytes =
      static_cast<std::uint64_t>(m.other_bytes + estimated_linear_bytes(job.recipe, m));
  if (job.recipe.mix.max_bytes != 0) e.output_bytes = job.recipe.mix.max_bytes;
  if (job.recipe.mix.bpw != 0)
    e.output_bytes = static_cast<std::uint64_t>(job.recipe.mix.bpw / 16 * m.checkpoint_bytes);
  e.calibration_bytes = static_cast<std::uint64_t>(calibration_bytes(job, c));
  const double head_bytes = double(c.vocab_size) * c.hidden_size * 4;
  const double block_bytes = m.linear_params / c.num_layers * 4;
  // Memory the process allocates (the checkpoint is mapped: its pages are the
  // kernel's cache, counted in the peak RSS but not here). Always: the float
  // head when logits are formed (a measured GGUF mix's probes), and the
  // quantized Linears for the methods that hold them all (the block drivers
  // leave each finished block in its checkpoint file). Then either the
  // quantization phase (one float block with its dequantized copies, and the
  // calibration side) or the writing of one output tensor (the widest, as
  // float32 and its output).
  const bool holds_linears =
      !job.stats.empty() || job.recipe.method == Method::Nf4 || job.recipe.method == Method::W8A8;
  const double resident = kProcessOverheadBytes +
                          (job.recipe.measures_mix_costs() ? head_bytes : 0.0) +
                          (holds_linears ? m.linear_params + m.groups * 8 : 0.0);
  const double quantizing = 2 * block_bytes + double(e.calibration_bytes);
  const double writing = std::max(head_bytes, double(c.hidden_size) * c.intermediate_size * 4) * 2;
  e.allocated_bytes = static_cast<std::uint64_t>(resident + std::max(quantizing, writing));
  e.peak_bytes = e.allocated_bytes + static_cast<std::uint64_t>(m.checkpoint_bytes);
  DeviceGroup* group = active_backend() != nullptr ? active_backend()->device_group() : nullptr;
  if (group == nullptr || !job.stats.empty() || !job.recipe.needs_statistics() ||
      !device_path_refusal(c, job.recipe, {}).empty()) {
    e.seconds = estimate_flops(job, c, m) / (measured_gflops() * 1e9);
    return e;
  }
  const CalibConfig& calib = job.recipe.calibration;
  DeviceOps& first = group->device(0);
  const std::int64_t batch =
      std::int64_t{std::min(job.batch_windows, calib.samples)} * calib.seqlen;
  const DevicePathBytes bytes =
      device_path_bytes(c, std::int64_t{calib.samples} * calib.seqlen, batch, group->size(),
                        job.recipe.target == RoundingTarget::FloatOutputs);
  // The stream stays on a device when it fits beside the working set, and
  // stage inputs while half of it is free.
  const std::uint64_t free = first.free_bytes();
  const bool on_device_stream = bytes.stream + bytes.working <= free, kept = bytes.kept <= free / 2;
  e.device_bytes = (on_device_stream ? bytes.stream : 0) + bytes.working + (kept ? bytes.kept : 0);
  e.devices = group->size();
  QuantizeJob on_device = job;
  on_device.cache_budget_bytes = free / 2;
  // The windows and GPTQ's rows are shared out evenly.
  e.seconds = estimate_flops(on_device, c, m) / (device_gflops(first) * group->size() * 1e9);
  return e;
}

namespace {

std::vector<std::string> write_output(const QuantizeJob& job, const MethodOutput& result,
                                      const CalibrationSet* calibration,
                                      std::optional<StatsMixRecord> from_stats,
                                      Clock::time_point t0, const QuantizeProgress& progress,
                                      std::string source_hash = {}) {
  const MatrixBackend* backend = active_backend();
  RunInfo run{std::chrono::duration<double>(Clock::now() - t0).count(),
              job.threads,
              backend != nullptr ? backend->name() : "cpu",
              {},
              std::move(from_stats),
              std::move(source_hash)};
  if (progress.log) {
    char line[96];
    std::snprintf(line, sizeof line, "quantized in %.1f s; writing %s", run.seconds,
                  job.out.string().c_str());
    progress.log(line);
  }
  const auto warnings = write_quantized_model(job.model, job.out, job.recipe, calibration,
                                              result.linears, run, job.output, result.extras);
  std::filesystem::remove_all(checkpoint_dir(job.out));
  if (progress.log) {
    for (const auto& w : warnings) progress.log("warning: " + w);
    char line[128];
    std::snprintf(line, sizeof line, "done in %.1f s, peak RSS %.1f MiB",
                  std::chrono::duration<double>(Clock::now() - t0).count(),
                  peak_rss_bytes() / 1048576.0);
    progress.log(line);
  }
  return warnings;
}

}  // namespace

namespace {

// Step "calibrate": the calibration windows, when the recipe needs activations
// and names sources (a replay may need none).
std::optional<CalibrationSet> calibration_step(const QuantizeJob& job,
                                               const QuantizeProgress& progress) {
  if (!job.recipe.needs_calibration() || job.recipe.sources.empty()) return std::nullopt;
  CalibrationSet set = load_calibration(job.model, job.recipe.sources, job.recipe.calibration);
  if (progress.log)
    progress.log("calibration: " + std::to_string(set.windows.size()) + " windows of " +
                 std::to_string(job.recipe.calibration.seqlen) + " tokens");
  return set;
}

// Step "mix" (Recipe::mixes): every tensor's grid, chosen under the budget
// from measured or recorded costs, or replayed from a mix.json (checked against
// the model before any rounding), into job.recipe; returns the mix.json the
// output keeps.
std::string mix_step(QuantizeJob& job, const Model& model, const CalibrationSet* calibration,
                     const QuantizeProgress& progress) {
  Recipe& recipe = job.recipe;
  if (!recipe.mixes()) return {};
  const bool gguf = recipe.format == OutputFormat::gguf;
  const std::string_view output = gguf ? std::string_view("gguf") : kLinearMixOutput;
  if (!recipe.chooses_mix()) {
    const MixTypes types = read_mix_types(recipe.mix.types, output);
    const std::string where = recipe.mix.types.string();
    if (gguf) {
      recipe.gguf_tensor_types = gguf_type_map(types, where);
      check_gguf_types(recipe.gguf_tensor_types,
                       gguf_tensor_plan(model.config(), Checkpoint::open(model.path())), where);
    } else {
      recipe.linear_specs = linear_mix_specs(types, recipe, model.config(), where);
    }
    return mix_types_json(types, output);
  }
  if (gguf) {
    GgufMix mix = choose_gguf_mix(model, recipe, calibration, job.batch_windows, progress);
    recipe.gguf_tensor_types = std::move(mix.types);
    return std::move(mix.json);
  }
  LinearMix mix = choose_linear_mix(model, recipe, calibration, job.batch_windows, progress);
  recipe.linear_specs = linear_mix_specs(mix.schemes, recipe, model.config(), "the mix");
  return std::move(mix.json);
}

// Steps "scale" and "quantize per block": each method's driver folds its
// scales (searched, or replayed from `replay`) and rounds every Linear.
MethodOutput quantize_step(const QuantizeJob& job, const Model& model,
                           const CalibrationSet* calibration,
                           const std::vector<BlockScales>* replay,
                           const QuantizeProgress& progress) {
  MethodOutput result;
  switch (job.recipe.method) {
    case Method::W8A8:
      result = quantize_w8a8(model, job.recipe, calibration, job.batch_windows, replay, progress);
      break;
    case Method::Nf4:
      result.linears = QuantizedLinears(quantize_nf4(model, job.recipe, progress));
      break;
    case Method::None:
      break;
    case Method::Rtn:
      // GGUF: ggml's quantizers round every tensor as the file is written.
      if (job.recipe.format == OutputFormat::gguf) break;
      [[fallthrough]];
    case Method::Gptq:
    case Method::Awq: {
      const QuantizeRunOptions options{.batch_windows = job.batch_windows,
                                       .checkpoint_dir = checkpoint_dir(job.out),
                                       .resume = job.resume,
                                       .scale_replay = replay,
                                       .scale_record = &result.extras.scales,
                                       .cache_budget_bytes = job.cache_budget_bytes,
                                       .activation_checkpoint_seconds = job.checkpoint_seconds};
      result.linears = quantize_blocks(model, job.recipe, calibration, options, progress);
      break;
    }
  }
  // The norms (and routers) the folded scales changed are written as float32 tensors.
  for (auto& t : folded_tensors(model, result.extras.scales))
    result.extras.tensors.push_back({t.name, {t.values.begin(), t.values.end()}});
  return result;
}

}  // namespace

std::vector<std::string> run_quantize(const QuantizeJob& job, const QuantizeProgress& progress) {
  check_output_path(job.out, OutputKind::folder, "--out");
  ThreadScope threads(job.threads);
  const auto t0 = Clock::now();
  const Model model = Model::open(job.model);
  refuse_unwritable(job.model, model.config(), job.recipe);
  if (!job.stats.empty()) {  // Hessians from cached statistics: no forward pass
    auto r = quantize_from_stats_file(model, job.recipe, job.stats, job.mix, progress);
    return write_output(job, MethodOutput{QuantizedLinears(std::move(r.linears)), {}}, nullptr,
                        std::move(r.record), t0, progress);
  }
  // The record's hash of the source reads the whole checkpoint: beside the run.
  std::future<std::string> source_hash = std::async(std::launch::async, model_hash, job.model);
  std::optional<std::vector<BlockScales>> replay;
  if (!job.load_scales.empty()) replay = load_scales(job.load_scales, model, job.recipe);
  const std::optional<CalibrationSet> calibration = calibration_step(job, progress);
  const CalibrationSet* calib = calibration ? &*calibration : nullptr;
  QuantizeJob typed = job;
  std::string mix = mix_step(typed, model, calib, progress);
  MethodOutput result = quantize_step(typed, model, calib, replay ? &*replay : nullptr, progress);
  result.extras.mix = std::move(mix);
  return write_output(typed, result, calib, std::nullopt, t0, progress, source_hash.get());
}

}  // namespace ptq
