#include "pipeline/quantize/quantize_device.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <utility>

#include "algorithms/quantized_weight.hpp"
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
  if (r.refit != ScaleRefit::None) return "the least-squares refit";
  if (r.code_sweeps != 0) return "code sweeps";
  if (r.clip.method == ClipMethod::Percentile) return "percentile clipping";
  if (r.order != ColumnOrder::Natural) return "act-order";
  if (r.group_grids != GroupGrids::Dynamic) return "static groups";
  if (!device_gptq_supports(r.gptq_config()))
    return "this grid (only GPTQ's per-channel or group grids)";
  return "";
}

// One device's share of the calibration stream, walked in batches of whole
// windows: on the device, or "spilled" to host memory when it does not fit
// beside the device's working set, each batch then uploaded for each stage
// and, after the residual add, downloaded back.
struct DeviceStream {
  DeviceOps* ops = nullptr;
  DeviceMatrix x;  // resident
  MatrixRM host;   // spilled
  Eigen::Index rows = 0, batch_rows = 0;

  bool spilled() const { return host.rows() > 0; }
  Eigen::Index batches() const { return (rows + batch_rows - 1) / batch_rows; }
  DeviceMatrix batch(Eigen::Index b) const {
    const Eigen::Index first = b * batch_rows, count = std::min(batch_rows, rows - first);
    return spilled() ? ops->upload(host.middleRows(first, count)) : x.middle_rows(first, count);
  }
  // Batch b after its residual add.
  void store(Eigen::Index b, const DeviceMatrix& batch) {
    if (spilled()) ops->download(batch, host.middleRows(b * batch_rows, batch.rows()));
  }
  void copy_to(Eigen::Ref<MatrixRM> to) const {
    if (spilled())
      to = host;
    else if (rows > 0)
      ops->download(x, to);
  }
};

// What one device of the group holds: its copy of the block being quantized
// and its windows; for the recipe target float_outputs also the float
// model's block and stream on the same windows.
struct Replica {
  DeviceStream s, float_s;
  std::optional<DeviceBlock> block, float_block;

  DeviceOps& ops() const { return *s.ops; }
};

// f(i) for every device i, each on a thread of its own (a device's calls wait
// for it, and the devices work at once); one device runs on the caller's.
template <class F>
void each_device(std::vector<Replica>& rs, F&& f) {
  if (rs.size() == 1) return f(0);
  std::vector<std::future<void>> jobs;
  for (std::size_t i = 0; i < rs.size(); ++i)
    jobs.push_back(std::async(std::launch::async, [&f, i] { f(static_cast<int>(i)); }));
  for (auto& job : jobs) job.get();
}

// Output rows [first, first + count) of `rows` for device i of n: GPTQ's rows
// are independent under one factor, so each device rounds a share. Shares
// start at multiples of `align`, GPTQ's row chunk (GptqConfig::rows_per_task):
// a chunk's products then cover the rows they cover in one matrix, with the
// same float rounding, so any device count gives the bytes of one. A share
// may be empty (fewer rows than devices times `align`).
std::pair<Eigen::Index, Eigen::Index> row_share(Eigen::Index rows, int i, int n,
                                                Eigen::Index align) {
  const auto start = [&](int k) { return k == n ? rows : rows * k / n / align * align; };
  return {start(i), start(i + 1) - start(i)};
}

// GPTQ of `role`'s weights (of GPTAQ's targets, when given) on every
// device's copy, the rows shared out, each share then broadcast so that every
// copy holds the dequantized weights.
QuantizedLinear gptq_rows(DeviceGroup& group, std::vector<Replica>& rs,
                          const std::vector<DeviceFactor>& f,
                          const std::vector<DeviceMatrix>& target, const GptqConfig& g, int layer,
                          LinearRole role) {
  const int n = group.size();
  std::vector<DeviceMatrix> w;
  for (Replica& r : rs) w.push_back(r.block->weight(role));
  const Eigen::Index rows = w[0].rows();
  std::vector<DeviceGptqResult> parts(rs.size());
  each_device(rs, [&](int i) {
    const auto [first, count] = row_share(rows, i, n, g.rows_per_task);
    if (count == 0) return;
    DeviceMatrix share = w[i].middle_rows(first, count);
    const DeviceMatrix target_share =
        target[i].empty() ? DeviceMatrix() : target[i].middle_rows(first, count);
    parts[i] = rs[i].ops().gptq(share, f[i], g, target_share);
  });
  QuantizedLinear q{layer, role, {}, {}};
  std::vector<QuantizedWeight> shares;
  for (int i = 0; i < n; ++i) {
    const auto [first, count] = row_share(rows, i, n, g.rows_per_task);
    if (count == 0) continue;
    group.broadcast_rows(w, first, count, i);
    q.report.gptq_loss += parts[i].loss;
    q.report.weight_mse += parts[i].weight_mse * (double(count) / double(rows));  // 1 device: as is
    shares.emplace_back(std::move(parts[i].quantized));
  }
  q.weight = std::get<QuantizedMatrix>(stack_rows(shares, linear_key_text({layer, role})));
  return q;
}

// RTN of `role`'s weights (of GPTAQ's target, when given), as on the CPU
// when GPTQ's factor fails: rounded on the host from device 0's copy, the
// result uploaded to every copy.
QuantizedLinear rtn_fallback(std::vector<Replica>& rs, const DeviceMatrix& target,
                             const GptqConfig& g, int layer, LinearRole role) {
  DeviceMatrix& w0 = rs[0].block->weight(role);
  MatrixRM host(w0.rows(), w0.cols()), rounded(w0.rows(), w0.cols());
  rs[0].ops().download(w0, host);
  if (target.empty())
    rounded = host;
  else
    rs[0].ops().download(target, rounded);
  QuantizedMatrix m = rtn_quantize(rounded, g.spec, g.clip);
  const MatrixRM dequantized = m.dequantize();
  QuantizedLinear q{layer, role, {}, {}};
  q.report.weight_mse = weight_mse(host, dequantized);
  q.report.cholesky_failed = true;
  for (Replica& r : rs) r.block->weight(role) = r.ops().upload(dequantized);
  q.weight = std::move(m);
  return q;
}

// An input's statistics on every device, each already the group's total:
// X^T X and, for the recipe target float_outputs, GPTAQ's X~^T (X - X~).
struct GroupSums {
  std::vector<DeviceSums> xtx, cross;
};

// GPTQ of the Linears reading `input` under H = 2 (sums / tokens)
// (gptq_hessian's), one factor for them all; with cross sums, of GPTAQ's
// targets under the correction they give. Each Linear's device weights
// become their dequantized values. Without a factor, RTN, as on the CPU.
void quantize_group(DeviceGroup& group, std::vector<Replica>& rs, const Recipe& recipe, int layer,
                    LinearInput input, GroupSums& sums, Eigen::Index tokens,
                    const QuantizeProgress& progress, std::vector<QuantizedLinear>& out) {
  const GptqConfig g = recipe.gptq_config();
  std::vector<DeviceFactor> f(rs.size());
  std::vector<DeviceMatrix> correction(rs.size());
  each_device(rs, [&](int i) {
    if (!sums.cross.empty())
      correction[i] = rs[i].ops().float_output_correction(sums.xtx[i], sums.cross[i], tokens,
                                                          recipe.target_damp);
    f[i] = rs[i].ops().gptq_factor(sums.xtx[i], tokens, g.damp, g.max_damping_retries);
  });
  const bool float_target = !sums.cross.empty();
  sums = GroupSums();
  for (LinearRole role : roles_reading(input)) {
    const auto t0 = Clock::now();
    // GPTAQ's target of the whole matrix on every device: the same bits
    // whatever the row shares.
    std::vector<DeviceMatrix> target(rs.size());
    if (float_target)
      each_device(rs, [&](int i) {
        target[i] = rs[i].ops().float_output_target(rs[i].block->weight(role), correction[i]);
      });
    QuantizedLinear q = f[0].ok ? gptq_rows(group, rs, f, target, g, layer, role)
                                : rtn_fallback(rs, target[0], g, layer, role);
    q.report.layer = layer;
    q.report.role = role;
    q.report.damping = f[0].damping;
    q.report.damping_retries = f[0].damping_retries;
    q.report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    log_linear(progress, q.report);
    out.push_back(std::move(q));
  }
}

// Whether `bytes` more may stay on the device: within half of what is free,
// the rest left for the stages' temporaries and the next Hessian.
bool fits(DeviceOps& ops, std::uint64_t bytes) { return bytes <= ops.free_bytes() / 2; }

// X^T X of the input q(i, batch) over every device's batches, summed over
// the group; with a float input float_q (target float_outputs) also
// X~^T (X - X~).
template <class Q, class F>
GroupSums group_sums(DeviceGroup& group, std::vector<Replica>& rs, Eigen::Index features, Q&& q,
                     F&& float_q) {
  const bool cross = rs[0].float_block.has_value();
  GroupSums sums{std::vector<DeviceSums>(rs.size()), {}};
  if (cross) sums.cross.resize(rs.size());
  each_device(rs, [&](int i) {
    DeviceOps& ops = rs[i].ops();
    sums.xtx[i] = ops.zero_sums(features, features);
    if (cross) sums.cross[i] = ops.zero_sums(features, features);
    for (Eigen::Index b = 0; b < rs[i].s.batches(); ++b) {
      const DeviceMatrix x = q(i, b);
      ops.add_xtx(x, sums.xtx[i]);
      if (cross) ops.add_cross(x, float_q(i, b), sums.cross[i]);
    }
  });
  group.all_reduce(sums.xtx);
  if (cross) group.all_reduce(sums.cross);
  return sums;
}

// One sublayer's inner results (attention context, MLP hidden state) of a
// stream, kept on the device from the statistics pass for the residual add
// when they fit, else computed again for it.
struct InnerPass {
  bool keep = false;
  std::vector<DeviceMatrix> kept;

  // Batch b's, for the statistics pass.
  template <class F>
  DeviceMatrix first(Eigen::Index b, F&& compute) {
    DeviceMatrix in = compute(b);
    if (keep) kept.push_back(in);
    return in;
  }
  // Batch b's again, for the residual add (then let go).
  template <class F>
  DeviceMatrix again(Eigen::Index b, F&& compute) {
    if (!keep) return compute(b);
    return std::exchange(kept[b], DeviceMatrix());
  }
};

// x += out(inner) over every batch of stream s, through block's out Linear.
template <class F>
void add_sublayer(DeviceStream& s, const DeviceBlock& block, const SublayerSpec& sublayer,
                  InnerPass& pass, F&& inner) {
  for (Eigen::Index b = 0; b < s.batches(); ++b) {
    DeviceMatrix x = s.batch(b);
    block.add_output(sublayer, pass.again(b, inner), x);
    s.store(b, x);
  }
}

// One sublayer, true-sequentially: the normed stream's statistics, GPTQ of
// the Linears reading it, the inner op's statistics over the quantized
// Linears, GPTQ of the out Linear, then the residual add through it. For the
// recipe target float_outputs the float block does the same on the float
// stream beside it (its inputs read by the statistics, its add after). The
// inner results stay on the device between their statistics and the add when
// they fit; otherwise the add computes them again.
void quantize_sublayer(DeviceGroup& group, std::vector<Replica>& rs, const ModelConfig& c,
                       const Recipe& recipe, int layer, const SublayerSpec& sublayer,
                       Eigen::Index tokens, const QuantizeProgress& progress,
                       std::vector<QuantizedLinear>& out) {
  const bool with_float = rs[0].float_block.has_value();
  auto normed = [&](int i, Eigen::Index b) {
    return rs[i].block->normed(sublayer, rs[i].s.batch(b));
  };
  auto float_normed = [&](int i, Eigen::Index b) {
    return rs[i].float_block->normed(sublayer, rs[i].float_s.batch(b));
  };
  auto inner = [&](int i) {
    return [&, i](Eigen::Index b) { return rs[i].block->inner(sublayer.sublayer, normed(i, b)); };
  };
  auto float_inner = [&](int i) {
    return [&, i](Eigen::Index b) {
      return rs[i].float_block->inner(sublayer.sublayer, float_normed(i, b));
    };
  };
  GroupSums sums = group_sums(group, rs, input_features(c, sublayer.in), normed, float_normed);
  quantize_group(group, rs, recipe, layer, sublayer.in, sums, tokens, progress, out);
  const auto inner_features = input_features(c, sublayer.inner);
  std::vector<InnerPass> passes(rs.size()), float_passes(rs.size());
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const auto bytes = static_cast<std::uint64_t>(rs[i].s.rows) * inner_features * sizeof(float);
    passes[i].keep = float_passes[i].keep = fits(rs[i].ops(), with_float ? 2 * bytes : bytes);
  }
  sums = group_sums(
      group, rs, inner_features,
      [&](int i, Eigen::Index b) { return passes[i].first(b, inner(i)); },
      [&](int i, Eigen::Index b) { return float_passes[i].first(b, float_inner(i)); });
  quantize_group(group, rs, recipe, layer, sublayer.inner, sums, tokens, progress, out);
  each_device(rs, [&](int i) {
    add_sublayer(rs[i].s, *rs[i].block, sublayer, passes[i], inner(i));
    if (with_float)
      add_sublayer(rs[i].float_s, *rs[i].float_block, sublayer, float_passes[i], float_inner(i));
  });
}

// Block `layer`'s time on the GPU (t0 to `saved`) and its checkpoint's
// (after); the memory peak of the device that held the most.
void log_block(const QuantizeProgress& progress, std::vector<Replica>& rs, int layer,
               Clock::time_point t0, Clock::time_point saved) {
  if (!progress.log) return;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  std::uint64_t peak = 0;
  for (Replica& r : rs) peak = std::max(peak, r.ops().peak_bytes());
  char line[160];
  std::snprintf(line, sizeof line,
                "block %d on the GPU: %.2f s, checkpoint %.2f s, device memory peak %.2f GiB",
                layer, seconds(t0, saved), seconds(saved, Clock::now()),
                static_cast<double>(peak) / double(1 << 30));
  progress.log(line);
}

// The group's devices, each given its share of the windows: whole batches,
// in order, so that each device's X^T X adds the batches the CPU's would. A
// share stays on its device when it fits there beside the working set;
// otherwise it is spilled to host memory.
std::vector<Replica> share_windows(DeviceGroup& group, const ModelConfig& c, const MatrixRM& x,
                                   const MatrixRM* float_x, Eigen::Index batch_rows,
                                   const QuantizeProgress& progress) {
  const int n = group.size();
  const Eigen::Index batches = (x.rows() + batch_rows - 1) / batch_rows;
  std::vector<Replica> rs(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const Eigen::Index first = std::min(x.rows(), batches * i / n * batch_rows);
    const Eigen::Index last = std::min(x.rows(), batches * (i + 1) / n * batch_rows);
    DeviceStream& s = rs[i].s;
    s.ops = &group.device(i);
    s.rows = last - first;
    s.batch_rows = batch_rows;
    if (float_x != nullptr) rs[i].float_s = s;
    if (s.rows == 0) continue;
    const DevicePathBytes need =
        device_path_bytes(c, s.rows, std::min(batch_rows, s.rows), 1, float_x != nullptr);
    const bool resident = need.stream + need.working <= s.ops->free_bytes();
    auto place = [&](DeviceStream& to, const MatrixRM& from) {
      if (resident)
        to.x = to.ops->upload(from.middleRows(first, to.rows));
      else
        to.host = from.middleRows(first, to.rows);
    };
    place(s, x);
    if (float_x != nullptr) place(rs[i].float_s, *float_x);
    if (!resident && progress.log)
      progress.log("GPU path: device " + std::to_string(i) + "'s share of the stream" +
                   (float_x != nullptr ? "s (quantized and float, " : " (") +
                   std::to_string(need.stream >> 20) +
                   " MiB) does not fit beside its working set; it stays in host memory, each "
                   "batch uploaded when a stage reads it");
  }
  return rs;
}

// Every device's share of one stream (member `stream` of each replica) into
// `to`, [tokens, hidden], in window order.
void gather(std::vector<Replica>& rs, DeviceStream Replica::*stream, Eigen::Index tokens,
            Eigen::Index hidden, MatrixRM& to) {
  to.resize(tokens, hidden);
  Eigen::Index row = 0;
  for (Replica& r : rs) {
    (r.*stream).copy_to(to.middleRows(row, r.s.rows));
    row += r.s.rows;
  }
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

DevicePathBytes device_path_bytes(const ModelConfig& c, std::int64_t all_tokens,
                                  std::int64_t batch_tokens, int devices, bool float_target) {
  // The windows go out in whole batches: the most tokens one device holds.
  const std::int64_t batches = (all_tokens + batch_tokens - 1) / batch_tokens;
  const std::int64_t tokens =
      std::min(all_tokens, (batches + devices - 1) / devices * batch_tokens);
  const double hidden = c.hidden_size, inter = c.intermediate_size;
  const double widest = std::max(hidden, inter);
  const double q = double(c.num_heads) * c.head_dim, kv = double(c.num_kv_heads) * c.head_dim;
  // Target float_outputs: the float model's stream, block and stage inputs
  // too, and GPTAQ's cross sums, its system (H + lambda I, D: doubles) and
  // correction M.
  const double copies = float_target ? 2 : 1;
  const double stream = double(tokens) * hidden * 4 * copies;
  const double kept = double(tokens) * std::max(inter, q) * 4 * copies;
  const double block = (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter) * 4 * copies;
  // The running sums, GPTQ's reversed H and the float partial X^T X or U; a
  // Linear's original weights beside it.
  const double hessian =
      widest * widest * (8 + 8 + 4 + (float_target ? 8 + 8 + 8 + 4 : 0)) + hidden * inter * 4;
  // Normed input, gate and up, or q/k/v, context and 1 GiB of attention scores.
  const double batch = double(batch_tokens) * std::max(hidden + 2 * inter, 2 * q + 3 * kv) * 4 +
                       double(std::int64_t{1} << 30);
  return {static_cast<std::uint64_t>(stream), static_cast<std::uint64_t>(block + hessian + batch),
          static_cast<std::uint64_t>(kept)};
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

QuantizedLinears quantize_blocks_on_device(DeviceGroup& group, const Model& model,
                                           const Recipe& recipe, const CalibrationSet& calibration,
                                           const QuantizeRunOptions& options,
                                           const QuantizeProgress& progress) {
  PTQ_ASSERT(device_path_refusal(model.config(), recipe, options).empty());
  const ModelConfig& c = model.config();
  const int seq_len = calibration.config.seqlen;
  // The stream on the host: at the start (a resume loads it over the
  // embeddings, sized alike), and for checkpoints.
  MatrixRM host_x = embed_windows(model, calibration), host_float_x;
  const bool with_float = recipe.target == RoundingTarget::FloatOutputs;
  if (with_float) host_float_x = host_x;
  MatrixRM* const float_x = with_float ? &host_float_x : nullptr;
  const Eigen::Index tokens = host_x.rows(), hidden = host_x.cols();
  std::optional<ResumeCheckpoints> checkpoints;
  QuantizedLinears out;
  int first = 0;
  if (!options.checkpoint_dir.empty()) {
    checkpoints.emplace(options.checkpoint_dir, run_fingerprint(model, recipe, &calibration),
                        options.activation_checkpoint_seconds);
    if (options.resume == Resume::yes)
      first = checkpoints->load(model, recipe, {&host_x, float_x, {}}, out, nullptr);
    if (first > 0 && progress.log)
      progress.log("resuming after block " + std::to_string(first - 1));
  }
  std::vector<Replica> rs =
      share_windows(group, c, host_x, float_x,
                    static_cast<Eigen::Index>(options.batch_windows) * seq_len, progress);
  host_x = host_float_x = MatrixRM();
  if (progress.log) {
    const auto spilled =
        std::count_if(rs.begin(), rs.end(), [](const Replica& r) { return r.s.spilled(); });
    const std::string devices =
        rs.size() == 1 ? "the device" : std::to_string(rs.size()) + " devices";
    progress.log(std::string("GPU path (") +
                 (group.device(0).math() == DeviceMath::tf32 ? "tf32" : "fp32") +
                 "): the calibration stream, " +
                 std::to_string(tokens * hidden * sizeof(float) >> 20) + " MiB, " +
                 (spilled == 0 ? "on " + devices
                               : "for " + devices + ", " + std::to_string(spilled) + " share" +
                                     (spilled == 1 ? "" : "s") + " in host memory"));
  }
  const CheckpointStreams streams{&host_x, float_x, [&] {
                                    gather(rs, &Replica::s, tokens, hidden, host_x);
                                    if (with_float)
                                      gather(rs, &Replica::float_s, tokens, hidden, host_float_x);
                                  }};
  // The host reads block layer + 1 while the devices quantize block layer.
  auto load = [&model](int layer) { return model.load_block(layer); };
  std::future<BlockWeights> next;
  if (first < model.num_layers()) next = std::async(std::launch::async, load, first);
  for (int layer = first; layer < model.num_layers(); ++layer) {
    const BlockWeights w = next.get();
    if (layer + 1 < model.num_layers()) next = std::async(std::launch::async, load, layer + 1);
    const auto t0 = Clock::now();
    std::vector<QuantizedLinear> block_out;
    each_device(rs, [&](int i) {
      rs[i].block.emplace(rs[i].ops(), c, w, seq_len);
      if (with_float) rs[i].float_block.emplace(rs[i].ops(), c, w, seq_len);
    });
    for (const SublayerSpec& sublayer : block_sublayers)
      quantize_sublayer(group, rs, c, recipe, layer, sublayer, tokens, progress, block_out);
    for (Replica& r : rs) {
      r.block.reset();
      r.float_block.reset();
    }
    const auto saving = Clock::now();
    if (!checkpoints) {
      log_block(progress, rs, layer, t0, saving);
      for (auto& q : block_out) out.add(std::move(q));
      continue;
    }
    checkpoints->save(layer, model.num_layers(), block_out, std::nullopt, streams);
    log_block(progress, rs, layer, t0, saving);
    for (const auto& q : block_out) out.add_stored(checkpoints->block_file(layer), q.report);
    host_x = host_float_x = MatrixRM();
  }
  return out;
}

}  // namespace ptq
