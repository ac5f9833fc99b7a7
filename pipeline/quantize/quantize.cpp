#include "pipeline/quantize/quantize.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

#include "algorithms/backend.hpp"
#include "algorithms/ggml_gptq.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "algorithms/quantized_weight.hpp"
#include "algorithms/rtn.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/output/gguf_linear.hpp"
#include "pipeline/quantize/awq.hpp"
#include "pipeline/quantize/checkpoints.hpp"
#include "pipeline/quantize/experts.hpp"
#include "pipeline/quantize/quantize_device.hpp"
#include "pipeline/quantize/smoothing.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// RTN's grid for one Linear: the recipe's; for AWQ into GGUF the uniform grid
// of the Linear's own tensor type, which llama-quantize's rules may make other
// than the base type (an 8-expert model's attn_k and attn_v are Q8_0 under
// every type; refuse_unwritable checked that each has one).
QuantSpec rtn_spec(const Recipe& recipe, const ModelConfig& config, int layer, LinearRole role) {
  if (recipe.format != OutputFormat::gguf || recipe.method != Method::Awq)
    return recipe.quant_spec();
  const std::optional<QuantSpec> own =
      ggml_uniform_spec(gguf_linear_grid(recipe, config, layer, role));
  PTQ_ASSERT(own.has_value());
  return *own;
}

}  // namespace

// The reference's Hessian scaling, 2/n X^T X, so losses compare with it.
Eigen::MatrixXd gptq_hessian(Eigen::MatrixXd mean_xtx) {
  mean_xtx *= 2.0;  // in place: at 7B's MLP width the matrix is ~1 GB
  return mean_xtx;
}

GgmlBlocks gguf_gptq(const Recipe& recipe, GgmlGrid grid, const MatrixRM& w,
                     const Eigen::MatrixXd& hessian, LinearReport& report) {
  GgmlGptqConfig c{.gptq = recipe.gptq_config(), .scales = GroupGrids::Dynamic, .refit = recipe.gguf_refit};
  if (recipe.order == ColumnOrder::ActivationOrder || recipe.group_grids == GroupGrids::Static)
    c.scales = GroupGrids::Static;
  const GptqHessian prepared = prepare_hessian(hessian, c.gptq);
  report.damping = prepared.damping;
  report.damping_retries = prepared.damping_retries;
  report.cholesky_failed = prepared.status == GptqStatus::CholeskyFailed;
  if (report.cholesky_failed)
    return ggml_quantize(grid, w, std::vector<float>(prepared.diag.begin(), prepared.diag.end()));
  GgmlGptqResult r = ggml_gptq(grid, w, hessian, prepared, c);
  report.gptq_loss = r.loss;
  return std::move(r.blocks);
}

QuantizedLinear quantize_linear(const Recipe& recipe, const ModelConfig& config, int layer,
                                LinearRole role, const MatrixRM& w, const Eigen::MatrixXd* hessian,
                                const GptqHessian* factor) {
  if (!recipe.linear_specs.empty()) {  // a mix: this Linear's own grid
    Recipe own = recipe;
    own.spec = recipe.linear_spec_for(layer, role);
    own.linear_specs.clear();
    return quantize_linear(own, config, layer, role, w, hessian, factor);
  }
  const auto t0 = Clock::now();
  QuantizedLinear q{layer, role, {}, {}};
  if (recipe.method == Method::Gptq && recipe.format == OutputFormat::gguf) {
    PTQ_ASSERT(hessian != nullptr);
    q.weight = gguf_gptq(recipe, gguf_linear_grid(recipe, config, layer, role), w, *hessian, q.report);
    finish_report(q, w, t0);
    return q;
  }
  QuantizedMatrix m;
  if (recipe.method != Method::Gptq) {
    m = rtn_quantize(w, rtn_spec(recipe, config, layer, role), recipe.clip);
  } else {
    PTQ_ASSERT(hessian != nullptr || factor != nullptr);
    GptqResult r = factor != nullptr ? gptq_quantize(w, *factor, recipe.gptq_config())
                                     : gptq_quantize(w, *hessian, recipe.gptq_config());
    m = std::move(r.quantized);
    q.report.gptq_loss = r.loss;
    q.report.damping = r.damping;
    q.report.damping_retries = r.damping_retries;
    q.report.cholesky_failed = r.status == GptqStatus::CholeskyFailed;
  }
  PTQ_ASSERT(!recipe.reads_hessian_after_rounding() || hessian != nullptr);
  if (recipe.code_sweeps > 0) descend_codes(m, w, *hessian, recipe.code_sweeps);
  if (recipe.refit == ScaleRefit::LeastSquares) refit_scales(m, w, *hessian);
  q.weight = std::move(m);
  finish_report(q, w, t0);
  return q;
}

FloatOutputCross::FloatOutputCross(Eigen::Index features) : sum_(Sums::Zero(features, features)) {}

void FloatOutputCross::add(const MatrixRM& q, const MatrixRM& f) {
  add_to(sum_, q, f);
  tokens_ += q.rows();
}

void FloatOutputCross::add_to(Eigen::Ref<Sums> sum, const MatrixRM& q, const MatrixRM& f) {
  PTQ_ASSERT(q.rows() == f.rows() && q.cols() == sum.cols() && f.cols() == sum.cols());
  constexpr Eigen::Index kRows = 2048;
  MatrixRM part(q.cols(), q.cols());
  for (Eigen::Index r0 = 0; r0 < q.rows(); r0 += kRows) {
    const Eigen::Index rows = std::min(kRows, q.rows() - r0);
    const MatrixRM qt = q.middleRows(r0, rows).transpose();
    const MatrixRM diff = f.middleRows(r0, rows) - q.middleRows(r0, rows);
    parallel_gemm(qt, diff, GemmOp::plain, part, GemmOutput::overwrite);
    sum += part.cast<double>();
  }
}

MatrixRM FloatOutputCross::correction(const Eigen::MatrixXd& hessian, double target_damp) const {
  return correction(hessian, sum_, tokens_, target_damp);
}

MatrixRM FloatOutputCross::correction(const Eigen::MatrixXd& hessian,
                                      const Eigen::Ref<const Sums>& sums, std::int64_t tokens,
                                      double target_damp) {
  Eigen::MatrixXd cross = sums / static_cast<double>(std::max<std::int64_t>(tokens, 1));
  cross *= 2.0;  // gptq_hessian's scale
  return float_output_correction(hessian, cross, target_damp);
}

QuantizedLinear quantize_toward(const Recipe& recipe, const ModelConfig& config, int layer,
                                LinearRole role, const MatrixRM& w, const Eigen::MatrixXd* hessian,
                                const GptqHessian* factor, const MatrixRM* correction) {
  if (correction == nullptr)
    return quantize_linear(recipe, config, layer, role, w, hessian, factor);
  QuantizedLinear q = quantize_linear(recipe, config, layer, role,
                                      float_output_target(w, *correction), hessian, factor);
  q.report.weight_mse = weight_mse(w, q.dequantize());
  return q;
}

void finish_report(QuantizedLinear& q, const MatrixRM& w, Clock::time_point t0) {
  q.report.layer = q.layer;
  q.report.role = q.role;
  q.report.weight_mse = weight_mse(w, q.dequantize());
  q.report.seconds = seconds_since(t0);
}

void log_linear(const QuantizeProgress& progress, const LinearReport& r) {
  if (!progress.log) return;
  char line[200];
  std::snprintf(line, sizeof line, "%-22s  weight mse %.3e  gptq loss %.4g  %.2fs%s",
                linear_key_text({r.layer, r.role, r.expert}).c_str(), r.weight_mse, r.gptq_loss,
                r.seconds, r.damping_retries ? "  (Cholesky retried with more damping)" : "");
  progress.log(line);
}

namespace {

// One block being quantized: its float weights, replaced group by group by
// their dequantized values, and the Linears quantized so far.
struct BlockJob {
  const Recipe& recipe;
  const ModelConfig& config;
  BlockWeights w;
  const QuantizeProgress& progress;
  std::vector<QuantizedLinear> out;
};

// Quantizes the Linears reading `input` (with that input's Hessian and GPTQ's
// factor of it, quantize_linear; null for RTN), then swaps in their
// dequantized weights so that later groups' inputs see them.
void quantize_group(BlockJob& job, LinearInput input, const Eigen::MatrixXd* hessian,
                    const GptqHessian* factor = nullptr, const MatrixRM* correction = nullptr) {
  for (LinearRole role : roles_reading(input)) {
    job.out.push_back(quantize_toward(job.recipe, job.config, job.w.layer, role, job.w.weight(role),
                                      hessian, factor, correction));
    job.w.weight(role) = job.out.back().dequantize();
    log_linear(job.progress, job.out.back().report);
  }
}

// The calibration windows' residual stream, x: [windows * seq_len, hidden],
// walked in batches of `batch_windows` whole windows, always in window order:
// statistics accumulate batch by batch in that order, whatever the thread count.
struct Stream {
  MatrixRM& x;
  int seq_len = 0;
  int batch_windows = 0;
  // Recipe target float_outputs: the float model's stream beside x (same rows).
  MatrixRM* float_x = nullptr;

  Eigen::Index batch_rows() const { return static_cast<Eigen::Index>(batch_windows) * seq_len; }
  Eigen::Index batches() const { return (x.rows() + batch_rows() - 1) / batch_rows(); }
  Eigen::Index first_row(Eigen::Index b) const { return b * batch_rows(); }
  Eigen::Index rows(Eigen::Index b) const {
    return std::min(batch_rows(), x.rows() - first_row(b));
  }
  MatrixRM batch(Eigen::Index b) const { return x.middleRows(first_row(b), rows(b)); }
};

// The input of one Linear group, batch by batch. The statistics pass computes
// every batch; with CachePolicy::keep the batches stay for the residual update
// (each freed once used), with CachePolicy::recompute that update computes them
// again from the stream, which it has not yet advanced for that batch.
class GroupInput {
 public:
  using Compute = std::function<MatrixRM(Eigen::Index batch)>;
  GroupInput(Stream& s, LinearInput input, int features, CachePolicy policy, Compute compute,
             Compute float_compute = {})
      : stream_(s),
        input_(input),
        features_(features),
        policy_(policy),
        compute_(std::move(compute)),
        float_compute_(std::move(float_compute)) {}

  LinearInput input() const { return input_; }
  int features() const { return features_; }
  bool has_float_input() const { return static_cast<bool>(float_compute_); }

  // The input's statistics; with a float input also GPTAQ's `cross`.
  InputStats stats(FloatOutputCross* cross = nullptr) {
    InputStats stats(features_, StatsContent::hessian);
    for (Eigen::Index b = 0; b < stream_.batches(); ++b) {
      MatrixRM in = compute_(b);
      stats.add(in);
      if (cross != nullptr) cross->add(in, float_compute_(b));
      if (policy_ == CachePolicy::keep) kept_.push_back(std::move(in));
    }
    return stats;
  }

  // The residual add of the sublayer's out Linear (add_sublayer_output), batch by batch.
  void add_projection(const ModelConfig& c, const BlockWeights& w, const SublayerSpec& sublayer) {
    for (Eigen::Index b = 0; b < stream_.batches(); ++b) {
      const MatrixRM in = policy_ == CachePolicy::keep ? std::move(kept_[b]) : compute_(b);
      MatrixRM x = stream_.batch(b);
      add_sublayer_output(c, w, sublayer, in, x);
      stream_.x.middleRows(stream_.first_row(b), stream_.rows(b)) = x;
    }
    kept_.clear();
  }

 private:
  Stream& stream_;
  LinearInput input_;
  int features_;
  CachePolicy policy_;
  Compute compute_;
  Compute float_compute_;
  std::vector<MatrixRM> kept_;
};

// GPTQ onto uniform grids factors the group's Hessian once for all its
// Linears, and H goes unless a step after the rounding reads it
// (Recipe::reads_hessian_after_rounding); the statistics go as soon as H is formed. At 7B's MLP
// width each is a ~1 GB matrix. With a float input (recipe target float_outputs) each Linear rounds
// GPTAQ's target under the same H, from the correction X~^T (X - X~) gives.
void quantize_group(BlockJob& job, GroupInput& input) {
  std::optional<FloatOutputCross> cross;
  if (input.has_float_input()) cross.emplace(input.features());
  Eigen::MatrixXd hessian = gptq_hessian(input.stats(cross ? &*cross : nullptr).mean_xtx());
  std::optional<MatrixRM> correction;
  if (cross) {
    correction = cross->correction(hessian, job.recipe.target_damp);
    cross.reset();
  }
  const MatrixRM* c = correction ? &*correction : nullptr;
  if (job.recipe.method != Method::Gptq || job.recipe.format == OutputFormat::gguf)
    return quantize_group(job, input.input(), &hessian, nullptr, c);
  const GptqHessian factor = prepare_hessian(hessian, job.recipe.gptq_config());
  if (!job.recipe.reads_hessian_after_rounding()) hessian = Eigen::MatrixXd();
  quantize_group(job, input.input(), hessian.size() > 0 ? &hessian : nullptr, &factor, c);
}

// Which of the stage caches holds a sublayer's inner result.
CachePolicy inner_policy(const StageCaches& caches, Sublayer sublayer) {
  return sublayer == Sublayer::attention ? caches.context : caches.hidden;
}

// The float model's block beside the quantized one (recipe target
// float_outputs): its stream at each sublayer's input (s.float_x, then after
// the attention's residual add), from which each group's float input is
// computed batch by batch. A sublayer's inner result (attention context, gated
// hidden state) is used twice: for its group's float input, then for the
// residual add that forms the next stream (add_sublayer; after the last, the
// float block's output goes back into s.float_x). Under the stage caches'
// policy the first use keeps it for the second; otherwise both compute it.
class FloatBlock {
 public:
  FloatBlock(const ModelConfig& c, const BlockWeights& w, Stream& s, const StageCaches& caches)
      : c_(c),
        w_(w),
        mid_x_(*s.float_x),
        streams_{Stream{*s.float_x, s.seq_len, s.batch_windows, nullptr},
                 Stream{mid_x_, s.seq_len, s.batch_windows, nullptr}},
        caches_(caches) {}

  MatrixRM normed(std::size_t i, Eigen::Index b) {
    return sublayer_normed(c_, w_, block_sublayers[i], streams_[i].batch(b));
  }
  MatrixRM inner(std::size_t i, Eigen::Index b) {
    std::map<Eigen::Index, MatrixRM>& kept = kept_[i];
    if (auto k = kept.find(b); k != kept.end()) {
      MatrixRM m = std::move(k->second);
      kept.erase(k);
      return m;
    }
    const Sublayer sublayer = block_sublayers[i].sublayer;
    MatrixRM m = sublayer_inner(c_, w_, sublayer, normed(i, b), streams_[i].seq_len);
    if (inner_policy(caches_, sublayer) == CachePolicy::keep) kept.emplace(b, m);
    return m;
  }
  void add_sublayer(std::size_t i) {
    const Stream& from = streams_[i];
    Stream& to = i + 1 < streams_.size() ? streams_[i + 1] : streams_[0];
    const bool experts = block_sublayers[i].sublayer == Sublayer::mlp && c_.is_moe(w_.layer);
    for (Eigen::Index b = 0; b < from.batches(); ++b) {
      MatrixRM x = from.batch(b);
      if (experts)
        x += moe_output(c_, w_, normed(i, b));
      else
        add_sublayer_output(c_, w_, block_sublayers[i], inner(i, b), x);
      to.x.middleRows(to.first_row(b), to.rows(b)) = x;
    }
  }

 private:
  const ModelConfig& c_;
  const BlockWeights w_;  // a copy: the job's weights are replaced group by group
  MatrixRM mid_x_;
  std::array<Stream, block_sublayers.size()> streams_;
  StageCaches caches_;
  std::array<std::map<Eigen::Index, MatrixRM>, block_sublayers.size()> kept_;
};

// A mixture layer's experts over the stream after the attention's residual add
// (experts.hpp), sublayer i; x leaves as the quantized layer's output, and the
// float block's stream (target float_outputs) as the float layer's.
void quantize_stream_experts(BlockJob& job, Stream& s, std::size_t i, FloatBlock* fb) {
  ExpertBatches batches{s.batches(),
                        [&](Eigen::Index b) {
                          return sublayer_normed(job.config, job.w, block_sublayers[i], s.batch(b));
                        },
                        [&](Eigen::Index b, const MatrixRM& out) {
                          s.x.middleRows(s.first_row(b), s.rows(b)) += out;
                        },
                        {}};
  if (fb != nullptr) batches.float_mlp_in = [fb, i](Eigen::Index b) { return fb->normed(i, b); };
  for (QuantizedLinear& q : quantize_experts(job.recipe, job.config, job.w, &batches, job.progress))
    job.out.push_back(std::move(q));
  if (fb != nullptr) fb->add_sublayer(i);
}

// True-sequential quantization of one block over the calibration stream, each
// stage run once per batch (about one block forward in all; docs/quantize.md),
// sublayer by sublayer (block_sublayers): the normed stream gives the first
// group's statistics (q/k/v; gate/up); the inner op over the quantized first
// group gives the out Linear's (o; down), then x += out(inner) through the
// family's output norm. A mixture layer's MLP sublayer goes expert by expert.
// x leaves as the quantized block's output. With the recipe's target
// float_outputs, the float block runs beside it.
void quantize_calibrated(BlockJob& job, const ModelConfig& c, Stream& s,
                         const StageCaches& caches) {
  const BlockWeights& w =
      job.w;  // the lambdas see each group's dequantized weights once swapped in
  std::optional<FloatBlock> fb;
  if (job.recipe.target == RoundingTarget::FloatOutputs) fb.emplace(c, job.w, s, caches);
  for (std::size_t i = 0; i < block_sublayers.size(); ++i) {
    const SublayerSpec& sublayer = block_sublayers[i];
    if (sublayer.sublayer == Sublayer::mlp && c.is_moe(w.layer))
      return quantize_stream_experts(job, s, i, fb ? &*fb : nullptr);
    auto float_input = [&](MatrixRM (FloatBlock::*stage)(std::size_t, Eigen::Index)) {
      if (!fb) return GroupInput::Compute{};
      return GroupInput::Compute([&fb, stage, i](Eigen::Index b) { return ((*fb).*stage)(i, b); });
    };
    auto normed = [&](Eigen::Index b) { return sublayer_normed(c, w, sublayer, s.batch(b)); };
    GroupInput in(s, sublayer.in, input_features(c, sublayer.in), CachePolicy::recompute, normed,
                  float_input(&FloatBlock::normed));
    quantize_group(job, in);
    GroupInput inner(
        s, sublayer.inner, input_features(c, sublayer.inner),
        inner_policy(caches, sublayer.sublayer),
        [&](Eigen::Index b) {
          return sublayer_inner(c, w, sublayer.sublayer, normed(b), s.seq_len);
        },
        float_input(&FloatBlock::inner));
    quantize_group(job, inner);
    inner.add_projection(c, w, sublayer);
    if (fb) fb->add_sublayer(i);
  }
}

// Scaling before rounding: the block's AWQ scales and clips or SmoothQuant scales
// (from the block input x, or replayed), folded into w. Without statistics of the
// quantized block (method awq, RTN), the stream advances through the float block
// here; otherwise x is left as it is.
BlockScales scaling_step(const ModelConfig& config, const Recipe& recipe, BlockWeights& w,
                         Stream* stream, const QuantizeRunOptions& options) {
  BlockScales awq;
  if (options.scale_replay != nullptr) {
    awq = options.scale_replay->at(static_cast<std::size_t>(w.layer));
  } else if (recipe.scaling == Scaling::SmoothQuant) {
    awq = smoothquant_block(config, w, stream->x, stream->seq_len, stream->batch_windows,
                            *recipe.smoothquant,
                            recipe.needs_statistics() ? StreamUpdate::keep : StreamUpdate::advance);
  } else if (recipe.method == Method::Awq || !recipe.needs_statistics()) {
    awq = awq_search_block(config, w, stream->x, stream->seq_len,
                           awq_options(recipe, stream->batch_windows));
  } else {
    MatrixRM copy = stream->x;
    awq = awq_search_block(config, w, copy, stream->seq_len,
                           awq_options(recipe, stream->batch_windows));
  }
  apply_block_scales(w, awq, recipe.spec);
  return awq;
}

void log_awq(const QuantizeProgress& progress, int layer, const BlockScales& awq) {
  if (!progress.log) return;
  for (const ScaleGroup& g : awq.scales) {
    char line[160];
    std::snprintf(line, sizeof line, "layer %d scales after %-19s ratio %.2f  output error %.4g",
                  layer, std::string(fold_site_name(g.site)).c_str(), g.ratio, g.loss);
    progress.log(line);
  }
}

// Loads block `layer`, folds in scales when the recipe asks for them, and
// quantizes its Linears; with statistics (GPTQ, refit) the stream advances
// through the quantized block (otherwise the scaling step advances it through
// the float block).
std::vector<QuantizedLinear> quantize_block(const Model& model, const Recipe& recipe, int layer,
                                            Stream* stream, const StageCaches& caches,
                                            const QuantizeRunOptions& options,
                                            std::optional<BlockScales>& awq,
                                            const QuantizeProgress& progress) {
  BlockJob job{recipe, model.config(), model.load_block(layer), progress, {}};
  if (recipe.folds_scales()) {
    awq = scaling_step(model.config(), recipe, job.w, stream, options);
    log_awq(progress, layer, *awq);
  }
  if (recipe.needs_statistics()) {
    quantize_calibrated(job, model.config(), *stream, caches);
    return std::move(job.out);
  }
  const bool moe = model.config().is_moe(layer);
  for (LinearInput input : all_linear_inputs)
    if (!moe || input == LinearInput::attention_in || input == LinearInput::attention_out)
      quantize_group(job, input, nullptr);
  if (moe)
    for (QuantizedLinear& q : quantize_experts(recipe, job.config, job.w, nullptr, progress))
      job.out.push_back(std::move(q));
  return std::move(job.out);
}

void log_caches(const QuantizeProgress& progress, const StageCaches& caches, const ModelConfig& c,
                std::int64_t tokens, std::uint64_t budget_bytes) {
  if (!progress.log) return;
  auto note = [&](const char* what, LinearInput input, CachePolicy policy) {
    if (policy == CachePolicy::keep) return;
    char line[200];
    std::snprintf(line, sizeof line,
                  "%s of all windows (%.0f MiB) exceed the stage cache budget (%.0f MiB): "
                  "recomputed for the residual add",
                  what, double(stage_input_bytes(c, input, tokens)) / 1048576.0,
                  double(budget_bytes) / 1048576.0);
    progress.log(line);
  };
  note("attention context", LinearInput::attention_out, caches.context);
  note("MLP hidden states", LinearInput::mlp_hidden, caches.hidden);
}

}  // namespace

MatrixRM embed_windows(const Model& model, const CalibrationSet& calibration) {
  std::vector<std::int32_t> ids;
  for (const auto& w : calibration.windows) ids.insert(ids.end(), w.ids.begin(), w.ids.end());
  return model.embed(ids);
}

void QuantizeRunOptions::validate() const {
  if (batch_windows < 1)
    throw input_error("--batch-windows", "at least 1 window per batch",
                      std::to_string(batch_windows));
  if (!(activation_checkpoint_seconds >= 0.0))
    throw input_error("--checkpoint-seconds", "a number of seconds >= 0",
                      std::to_string(activation_checkpoint_seconds));
}

std::uint64_t stage_input_bytes(const ModelConfig& c, LinearInput input, std::int64_t tokens) {
  return static_cast<std::uint64_t>(tokens) * static_cast<std::uint64_t>(input_features(c, input)) *
         sizeof(float);
}

StageCaches stage_caches(const ModelConfig& c, std::int64_t tokens, std::uint64_t budget_bytes) {
  auto policy = [&](LinearInput input) {
    return stage_input_bytes(c, input, tokens) <= budget_bytes ? CachePolicy::keep
                                                               : CachePolicy::recompute;
  };
  return {policy(LinearInput::attention_out), policy(LinearInput::mlp_hidden)};
}

QuantizedLinears quantize_blocks(const Model& model, const Recipe& recipe,
                                 const CalibrationSet* calibration,
                                 const QuantizeRunOptions& options,
                                 const QuantizeProgress& progress) {
  recipe.validate();
  options.validate();
  if (options.scale_replay != nullptr &&
      static_cast<int>(options.scale_replay->size()) != model.num_layers())
    throw input_error("AWQ scales to replay", std::to_string(model.num_layers()) + " layers",
                      std::to_string(options.scale_replay->size()));
  const bool calibrated = recipe.needs_calibration(
      options.scale_replay != nullptr ? ScaleSource::replay : ScaleSource::search);
  if (calibrated && (calibration == nullptr || calibration->windows.empty()))
    throw input_error(std::string(method_name(recipe.method)),
                      "calibration data (--calib or --calib-ids)", "none");
  if (DeviceGroup* group = active_backend() ? active_backend()->device_group() : nullptr;
      group != nullptr && calibrated && recipe.needs_statistics()) {
    std::string why = device_path_refusal(model.config(), recipe, options);
    const std::int64_t seq = calibration->config.seqlen, batch = options.batch_windows * seq;
    const std::uint64_t bytes =
        device_path_bytes(model.config(), std::int64_t(calibration->windows.size()) * seq, batch,
                          group->size(), recipe.target == RoundingTarget::FloatOutputs)
            .working;
    for (int i = 0; i < group->size() && why.empty(); ++i)
      if (bytes > group->device(i).free_bytes())
        why = "a block whose working set (weights, a Hessian and its factor, a batch: " +
              std::to_string(bytes >> 20) + " MiB) exceeds " +
              (group->size() == 1 ? "the GPU's" : "device " + std::to_string(i) + "'s") +
              " free memory";
    if (why.empty())
      return quantize_blocks_on_device(*group, model, recipe, *calibration, options, progress);
    if (progress.log)
      progress.log("the GPU path does not take " + why +
                   ": the CPU's steps run, their dense kernels on the GPU");
  }
  MatrixRM x;
  StageCaches caches;
  if (calibrated) {
    x = embed_windows(model, *calibration);
    caches = stage_caches(model.config(), x.rows(), options.cache_budget_bytes);
    if (recipe.needs_statistics())
      log_caches(progress, caches, model.config(), x.rows(), options.cache_budget_bytes);
  }
  MatrixRM float_x;
  if (calibrated && recipe.target == RoundingTarget::FloatOutputs) float_x = x;
  Stream stream{x, calibration ? calibration->config.seqlen : 0, options.batch_windows,
                float_x.size() > 0 ? &float_x : nullptr};
  Stream* sp = calibrated ? &stream : nullptr;
  const CheckpointStreams streams{sp ? &x : nullptr, stream.float_x, {}};

  QuantizedLinears out;
  std::optional<ResumeCheckpoints> checkpoints;
  int first = 0;
  if (!options.checkpoint_dir.empty()) {
    checkpoints.emplace(options.checkpoint_dir, run_fingerprint(model, recipe, calibration),
                        options.activation_checkpoint_seconds);
    if (options.resume == Resume::yes)
      first = checkpoints->load(model, recipe, streams, out, options.scale_record);
    if (first > 0 && progress.log)
      progress.log("resuming after block " + std::to_string(first - 1));
  }
  for (int layer = first; layer < model.num_layers(); ++layer) {
    std::optional<BlockScales> scales;
    auto block = quantize_block(model, recipe, layer, sp, caches, options, scales, progress);
    if (scales && options.scale_record != nullptr) options.scale_record->push_back(*scales);
    if (!checkpoints) {
      for (auto& q : block) out.add(std::move(q));
      continue;
    }
    // Saved, the block's weights leave memory: a run holds one block's at a time.
    checkpoints->save(layer, model.num_layers(), block, scales, streams);
    for (const auto& q : block) out.add_stored(checkpoints->block_file(layer), q.report);
  }
  return out;
}

}  // namespace ptq
