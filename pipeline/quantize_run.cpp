#include "pipeline/quantize_run.hpp"

#include <chrono>
#include <cstdio>

#include "algorithms/parallel_gemm.hpp"
#include "calibrate/model.hpp"
#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/progress.hpp"
#include "pipeline/w8a8.hpp"

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
  throw input_error("config.json", "eos_token_id (documents in text calibration sources are joined with it)",
                    "none");
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

}  // namespace

CalibrationSet load_calibration(const std::filesystem::path& model, std::span<const CalibSourceSpec> sources,
                                const CalibConfig& config) {
  bool needs_tokenizer = false;
  for (const auto& s : sources) needs_tokenizer |= s.path.extension() != ".ids";
  if (!needs_tokenizer) return build_calibration_set(sources, config, nullptr, 0);
  const Tokenizer tokenizer = Tokenizer::load(model);
  return build_calibration_set(sources, config, &tokenizer,
                               eos_of(load_model_config(model), tokenizer));
}

std::string QuantizeEstimate::text() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "output size  %.1f MiB\npeak memory  %.1f MiB (approx.)\ntime         %.0f s (approx., from a GEMM probe)\n",
                output_bytes / 1048576.0, peak_bytes / 1048576.0, seconds);
  return buf;
}

QuantizeEstimate estimate_quantize(const QuantizeJob& job) {
  const ModelConfig c = load_model_config(job.model);
  const Checkpoint ckpt = Checkpoint::open(job.model);
  QuantizeEstimate e;
  double linear_params = 0;
  for (LinearRole r : all_linear_roles)
    linear_params += double(linear_out_features(c, r)) * linear_in_features(c, r) * c.num_layers;
  const double groups = job.recipe.spec.granularity == Granularity::Group
                            ? linear_params / job.recipe.spec.group_size
                            : linear_params / c.hidden_size;
  double other_bytes = static_cast<double>(ckpt.total_bytes());
  for (int l = 0; l < c.num_layers; ++l)
    for (LinearRole r : all_linear_roles)
      if (const auto* t = ckpt.find(block_tensor_name(l, std::string(linear_spec(r).module) + ".weight")))
        other_bytes -= static_cast<double>(t->bytes.size());
  // float16 dequantized weights + uint8 codes + float scales and int zeros
  e.output_bytes = static_cast<std::uint64_t>(other_bytes + linear_params * 3 + groups * 8);
  const double tokens = job.recipe.needs_calibration() ? double(job.recipe.calibration.samples) * job.recipe.calibration.seqlen : 0;
  const double widest = std::max(c.hidden_size, c.intermediate_size);
  const double block_params = linear_params / c.num_layers;
  // residual stream + one batch's temporaries + block weights (twice) + Hessian in double
  e.peak_bytes = static_cast<std::uint64_t>(tokens * c.hidden_size * 4 +
                                            double(job.batch_windows) * job.recipe.calibration.seqlen * widest * 4 * 6 +
                                            block_params * 8 + widest * widest * 8 * 2 + e.output_bytes);
  const double forward_flops = 2.0 * linear_params * tokens * 3;  // ~3 block passes per block
  const double gptq_flops = job.recipe.method == Method::Gptq ? linear_params * widest * 2 : 0.0;
  e.seconds = (forward_flops + gptq_flops) / (measured_gflops() * 1e9);
  return e;
}

std::vector<std::string> run_quantize(const QuantizeJob& job, const QuantizeProgress& progress) {
  check_output_folder(job.out);
  ThreadScope threads(job.threads);
  const auto t0 = Clock::now();
  const Model model = Model::open(job.model);
  std::optional<CalibrationSet> calibration;
  if (job.recipe.needs_calibration()) {
    calibration = load_calibration(job.model, job.recipe.sources, job.recipe.calibration);
    if (progress.log) progress.log("calibration: " + std::to_string(calibration->windows.size()) + " windows of " +
                                   std::to_string(job.recipe.calibration.seqlen) + " tokens");
  }
  const CalibrationSet* calib = calibration ? &*calibration : nullptr;
  MethodOutput result;
  if (job.recipe.method == Method::W8A8) {
    result = quantize_w8a8(model, job.recipe, calib, job.batch_windows, progress);
  } else if (job.recipe.method == Method::Nf4) {
    result.linears = quantize_nf4(model, job.recipe, progress);
  } else {
    const QuantizeRunOptions options{job.batch_windows, checkpoint_dir(job.out), job.resume};
    result.linears = quantize_blocks(model, job.recipe, calib, options, progress);
  }
  RunInfo run{std::chrono::duration<double>(Clock::now() - t0).count(), job.threads, {}};
  const auto warnings =
      write_quantized_model(job.model, job.out, job.recipe, calib, result.linears, run, job.output, result.extras);
  std::filesystem::remove_all(checkpoint_dir(job.out));
  if (progress.log) {
    for (const auto& w : warnings) progress.log("warning: " + w);
    char line[128];
    std::snprintf(line, sizeof line, "done in %.1f s, peak RSS %.1f MiB",
                  std::chrono::duration<double>(Clock::now() - t0).count(), peak_rss_bytes() / 1048576.0);
    progress.log(line);
  }
  return warnings;
}

}  // namespace ptq
