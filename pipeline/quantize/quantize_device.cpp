#include "pipeline/quantize/quantize_device.hpp"

#include <chrono>
#include <cstdio>
#include <future>
#include <optional>

#include "algorithms/rtn.hpp"
#include "calibrate/device_block.hpp"
#include "calibrate/model.hpp"
#include "pipeline/quantize/checkpoints.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

std::string recipe_refusal(const Recipe& r) {
  if (r.method != Method::Gptq) return "method " + std::string(method_name(r.method));
  if (r.format == OutputFormat::gguf) return "GGUF's grids";
  if (!r.linear_specs.empty()) return "a mix of grids";
  if (r.folds_scales()) return "scaling (AWQ, SmoothQuant)";
  if (r.target != RoundingTarget::QuantizedInputs) return "target float_outputs";
  if (r.refit != ScaleRefit::None) return "the least-squares refit";
  if (r.clip.method != ClipMethod::None) return "clipping";
  if (r.order != ColumnOrder::Natural) return "act-order";
  if (r.group_grids != GroupGrids::Dynamic) return "static groups";
  if (!device_gptq_supports(r.spec)) return "this grid (only GPTQ's per-channel or group grids)";
  return "";
}

// The calibration stream on the device, walked in batches of whole windows.
struct DeviceStream {
  DeviceMatrix x;
  Eigen::Index batch_rows = 0;

  Eigen::Index batches() const { return (x.rows() + batch_rows - 1) / batch_rows; }
  DeviceMatrix batch(Eigen::Index b) const {
    const Eigen::Index first = b * batch_rows;
    return x.middle_rows(first, std::min(batch_rows, x.rows() - first));
  }
};

// GPTQ of the Linears reading `input` under H = 2 (sums / tokens)
// (gptq_hessian's), one factor for them all; each Linear's device weights become
// their dequantized values. Without a factor, RTN, as on the CPU.
void quantize_group(DeviceOps& ops, DeviceBlock& block, const Recipe& recipe, int layer,
                    LinearInput input, const DeviceSums& sums, Eigen::Index tokens,
                    const QuantizeProgress& progress, std::vector<QuantizedLinear>& out) {
  const GptqConfig g = recipe.gptq_config();
  const DeviceFactor f = ops.gptq_factor(sums, tokens, g.damp, g.max_damping_retries);
  for (LinearRole role : roles_reading(input)) {
    const auto t0 = Clock::now();
    QuantizedLinear q{layer, role, {}, {}};
    DeviceMatrix& w = block.weight(role);
    if (f.ok) {
      DeviceGptqResult r = ops.gptq(w, f, g.spec, g.block_size);
      q.weight = std::move(r.quantized);
      q.report.gptq_loss = r.loss;
      q.report.weight_mse = r.weight_mse;
    } else {
      MatrixRM host(w.rows(), w.cols());
      ops.download(w, host);
      QuantizedMatrix m = rtn_quantize(host, g.spec, g.clip);
      const MatrixRM dequantized = m.dequantize();
      q.report.weight_mse = weight_mse(host, dequantized);
      q.report.cholesky_failed = true;
      w = ops.upload(dequantized);
      q.weight = std::move(m);
    }
    q.report.layer = layer;
    q.report.role = role;
    q.report.damping = f.damping;
    q.report.damping_retries = f.damping_retries;
    q.report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    log_linear(progress, q.report);
    out.push_back(std::move(q));
  }
}

// Whether `bytes` more may stay on the device: within half of what is free,
// the rest left for the stages' temporaries and the next Hessian.
bool fits(DeviceOps& ops, std::uint64_t bytes) { return bytes <= ops.free_bytes() / 2; }

// One sublayer, true-sequentially: the normed stream's statistics, GPTQ of
// the Linears reading it, the inner op's statistics over the quantized
// Linears, GPTQ of the out Linear, then the residual add through it. The
// inner results stay on the device between their statistics and the add when
// they fit; otherwise the add computes them again.
void quantize_sublayer(DeviceOps& ops, DeviceBlock& block, const ModelConfig& c,
                       const Recipe& recipe, int layer, const SublayerSpec& sublayer,
                       DeviceStream& s, const QuantizeProgress& progress,
                       std::vector<QuantizedLinear>& out) {
  const Eigen::Index tokens = s.x.rows();
  DeviceSums sums = ops.zero_sums(input_features(c, sublayer.in), input_features(c, sublayer.in));
  for (Eigen::Index b = 0; b < s.batches(); ++b)
    ops.add_xtx(block.normed(sublayer, s.batch(b)), sums);
  quantize_group(ops, block, recipe, layer, sublayer.in, sums, tokens, progress, out);
  const auto inner_features = input_features(c, sublayer.inner);
  sums = ops.zero_sums(inner_features, inner_features);
  const bool keep = fits(ops, static_cast<std::uint64_t>(tokens) * inner_features * sizeof(float));
  std::vector<DeviceMatrix> kept;
  auto inner = [&](Eigen::Index b) {
    return block.inner(sublayer.sublayer, block.normed(sublayer, s.batch(b)));
  };
  for (Eigen::Index b = 0; b < s.batches(); ++b) {
    DeviceMatrix in = inner(b);
    ops.add_xtx(in, sums);
    if (keep) kept.push_back(std::move(in));
  }
  quantize_group(ops, block, recipe, layer, sublayer.inner, sums, tokens, progress, out);
  sums = DeviceSums();
  for (Eigen::Index b = 0; b < s.batches(); ++b) {
    DeviceMatrix x = s.batch(b);
    block.add_output(sublayer, keep ? kept[b] : inner(b), x);
    if (keep) kept[b] = DeviceMatrix();
  }
}

// Block `layer`'s time on the GPU (t0 to `saved`) and its checkpoint's (after).
void log_block(const QuantizeProgress& progress, DeviceOps& ops, int layer, Clock::time_point t0,
               Clock::time_point saved) {
  if (!progress.log) return;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  char line[160];
  std::snprintf(line, sizeof line,
                "block %d on the GPU: %.2f s, checkpoint %.2f s, device memory peak %.2f GiB",
                layer, seconds(t0, saved), seconds(saved, Clock::now()),
                static_cast<double>(ops.peak_bytes()) / double(1 << 30));
  progress.log(line);
}

}  // namespace

std::string device_path_refusal(const ModelConfig& config, const Recipe& recipe,
                                const QuantizeRunOptions& options) {
  if (std::string why = recipe_refusal(recipe); !why.empty()) return why;
  if (options.scale_replay != nullptr) return "replayed scales";
  for (int layer = 0; layer < config.num_layers; ++layer)
    if (std::string why = DeviceBlock::unsupported(config, layer); !why.empty()) return why;
  return "";
}

std::uint64_t device_path_bytes(const ModelConfig& c, std::int64_t tokens,
                                std::int64_t batch_tokens) {
  const double hidden = c.hidden_size, inter = c.intermediate_size;
  const double widest = std::max(hidden, inter);
  const double q = double(c.num_heads) * c.head_dim, kv = double(c.num_kv_heads) * c.head_dim;
  const double stream = double(tokens) * hidden * 4;
  const double kept = double(tokens) * std::max(inter, q) * 4;
  const double block = (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter) * 4;
  // The running sums, GPTQ's reversed H and the float partial X^T X or U; a
  // Linear's original weights beside it.
  const double hessian = widest * widest * (8 + 8 + 4) + hidden * inter * 4;
  // Normed input, gate and up, or q/k/v, context and 1 GiB of attention scores.
  const double batch = double(batch_tokens) * std::max(hidden + 2 * inter, 2 * q + 3 * kv) * 4 +
                       double(std::int64_t{1} << 30);
  return static_cast<std::uint64_t>(stream + kept + block + hessian + batch);
}

double device_gflops(DeviceOps& ops) {
  constexpr Eigen::Index rows = 8192, n = 4096;
  const DeviceMatrix x = ops.upload(MatrixRM::Constant(rows, n, 0.5f));
  const DeviceMatrix w = ops.upload(MatrixRM::Constant(n, n, 0.25f));
  DeviceMatrix y = ops.allocate(rows, n);
  MatrixRM sync(1, n);
  ops.linear(x, w, {}, y, GemmOutput::overwrite);  // warm-up: cuBLAS picks its kernel
  ops.download(y.middle_rows(0, 1), sync);
  constexpr int reps = 10;
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) ops.linear(x, w, {}, y, GemmOutput::overwrite);
  ops.download(y.middle_rows(0, 1), sync);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 2.0 * rows * n * n * reps / s / 1e9;
}

QuantizedLinears quantize_blocks_on_device(DeviceOps& ops, const Model& model, const Recipe& recipe,
                                           const CalibrationSet& calibration,
                                           const QuantizeRunOptions& options,
                                           const QuantizeProgress& progress) {
  PTQ_ASSERT(device_path_refusal(model.config(), recipe, options).empty());
  const ModelConfig& c = model.config();
  const int seq_len = calibration.config.seqlen;
  // The stream on the host: at the start (a resume loads it over the
  // embeddings, sized alike), and for checkpoints.
  MatrixRM host_x = embed_windows(model, calibration);
  std::optional<ResumeCheckpoints> checkpoints;
  QuantizedLinears out;
  int first = 0;
  if (!options.checkpoint_dir.empty()) {
    checkpoints.emplace(options.checkpoint_dir, run_fingerprint(model, recipe, &calibration),
                        options.activation_checkpoint_seconds);
    if (options.resume == Resume::yes)
      first = checkpoints->load(model, recipe, {&host_x, nullptr, {}}, out, nullptr);
    if (first > 0 && progress.log)
      progress.log("resuming after block " + std::to_string(first - 1));
  }
  DeviceStream s{ops.upload(host_x), static_cast<Eigen::Index>(options.batch_windows) * seq_len};
  host_x = MatrixRM();
  if (progress.log)
    progress.log(std::string("GPU path (") + (ops.math() == DeviceMath::tf32 ? "tf32" : "fp32") +
                 "): the calibration stream, " + std::to_string(s.x.size() * sizeof(float) >> 20) +
                 " MiB, on the device");
  const CheckpointStreams streams{&host_x, nullptr, [&] {
                                    host_x.resize(s.x.rows(), s.x.cols());
                                    ops.download(s.x, host_x);
                                  }};
  // The host reads block layer + 1 while the device quantizes block layer.
  auto load = [&model](int layer) { return model.load_block(layer); };
  std::future<BlockWeights> next;
  if (first < model.num_layers()) next = std::async(std::launch::async, load, first);
  for (int layer = first; layer < model.num_layers(); ++layer) {
    const BlockWeights w = next.get();
    if (layer + 1 < model.num_layers()) next = std::async(std::launch::async, load, layer + 1);
    const auto t0 = Clock::now();
    std::vector<QuantizedLinear> block_out;
    {
      DeviceBlock block(ops, c, w, seq_len);
      for (const SublayerSpec& sublayer : block_sublayers)
        quantize_sublayer(ops, block, c, recipe, layer, sublayer, s, progress, block_out);
    }
    const auto saving = Clock::now();
    if (!checkpoints) {
      log_block(progress, ops, layer, t0, saving);
      for (auto& q : block_out) out.add(std::move(q));
      continue;
    }
    checkpoints->save(layer, model.num_layers(), block_out, std::nullopt, streams);
    log_block(progress, ops, layer, t0, saving);
    for (const auto& q : block_out) out.add_stored(checkpoints->block_file(layer), q.report);
    host_x = MatrixRM();
  }
  return out;
}

}  // namespace ptq
