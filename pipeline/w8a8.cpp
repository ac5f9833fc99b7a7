#include "pipeline/w8a8.hpp"

#include <chrono>
#include <cstdio>

#include "algorithms/int8.hpp"
#include "algorithms/smoothquant.hpp"
#include "calibrate/model.hpp"
#include "calibrate/quantile_sketch.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

// Per-channel absmax (and, for percentiles, a sketch of |x|) of each block input.
class InputRanges : public LinearObserver {
 public:
  explicit InputRanges(bool with_sketch) : with_sketch_(with_sketch) {}
  void observe(int, std::span<const LinearRole> roles, const RowMatrix& x) override {
    const auto i = static_cast<std::size_t>(linear_spec(roles.front()).input);
    const Eigen::VectorXf m = x.cwiseAbs().colwise().maxCoeff().transpose();
    absmax_[i] = absmax_[i].size() == 0 ? m : absmax_[i].cwiseMax(m);
    if (with_sketch_) sketch_[i].add(std::span(x.data(), static_cast<std::size_t>(x.size())));
  }
  const Eigen::VectorXf& absmax(LinearInput input) const { return absmax_[static_cast<std::size_t>(input)]; }
  // The magnitude below which `percentile` % of the input's values lie (100: the absmax).
  float magnitude(LinearInput input, double percentile) const {
    if (percentile >= 100.0) return absmax(input).maxCoeff();
    return static_cast<float>(sketch_[static_cast<std::size_t>(input)].quantile(percentile / 100.0));
  }

 private:
  bool with_sketch_;
  std::array<Eigen::VectorXf, linear_input_count> absmax_;
  std::array<QuantileSketch, linear_input_count> sketch_;
};

// Runs block `w` over all windows, `batch` at a time in window order (statistics
// do not depend on the thread count); with `advance`, x becomes the block's output.
void run_windows(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len, int batch,
                 InputRanges& ranges, bool advance) {
  const Eigen::Index rows_per_batch = static_cast<Eigen::Index>(batch) * seq_len;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += rows_per_batch) {
    const Eigen::Index rows = std::min(rows_per_batch, x.rows() - r0);
    Activations act{x.middleRows(r0, rows), seq_len};
    block_forward(config, w, act, ForwardOptions{&ranges, nullptr, std::nullopt});
    if (advance) x.middleRows(r0, rows) = act.x;
  }
}

// A normed input and the Linears reading it: the groups SmoothQuant smooths.
struct SmoothGroup {
  LinearInput input;
  NormRole norm;
  std::array<LinearRole, 3> roles;
  int role_count;
};
constexpr std::array<SmoothGroup, 2> kSmoothGroups = {{
    {LinearInput::attention_in, NormRole::input, {LinearRole::q, LinearRole::k, LinearRole::v}, 3},
    {LinearInput::mlp_in, NormRole::post_attention, {LinearRole::gate, LinearRole::up, LinearRole::up}, 2},
}};

FloatVector& norm_of(BlockWeights& w, NormRole role) {
  return role == NormRole::input ? w.input_norm : w.post_attention_norm;
}

std::string norm_tensor_name(int layer, NormRole role) {
  for (const auto& spec : norm_specs)
    if (spec.role == role) return block_tensor_name(layer, spec.name);
  PTQ_ASSERT(false);
  return {};
}

// Folds SmoothQuant scales into the block; records the new norms and the scales.
void smooth_block(BlockWeights& w, const InputRanges& ranges, const SmoothQuantConfig& config,
                  ModelExtras& extras) {
  for (const auto& g : kSmoothGroups) {
    std::vector<MatrixRM*> weights;
    for (int i = 0; i < g.role_count; ++i) weights.push_back(&w.weight(g.roles[i]));
    const std::vector<const MatrixRM*> read(weights.begin(), weights.end());
    const Eigen::VectorXf s = smoothing_scales(ranges.absmax(g.input), read, config);
    FloatVector& norm = norm_of(w, g.norm);
    fold_smoothing(s, norm, weights);
    extras.tensors.push_back({norm_tensor_name(w.layer, g.norm), {norm.data(), norm.data() + norm.size()}});
    const std::string input = g.input == LinearInput::attention_in ? "attention_in" : "mlp_in";
    extras.search.push_back({"smoothquant/" + std::to_string(w.layer) + "/" + input, {s.data(), s.data() + s.size()}});
  }
}

InputScales static_scales(const InputRanges& ranges, double percentile) {
  InputScales s{};
  for (int i = 0; i < linear_input_count; ++i)
    s[i] = int8_scale(ranges.magnitude(static_cast<LinearInput>(i), percentile));
  return s;
}

QuantizedLinear int8_linear(int layer, LinearRole role, const RowMatrix& w) {
  const auto t0 = Clock::now();
  QuantizedLinear q{layer, role, int8_quantize_rows(w), {}, {}};
  q.report.layer = layer;
  q.report.role = role;
  q.report.weight_mse = weight_mse(w, q.matrix.dequantize());
  q.report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return q;
}

void log_block(const QuantizeProgress& progress, const char* method, int layer,
               std::span<const QuantizedLinear> block) {
  if (!progress.log) return;
  double mse = 0.0;
  for (const auto& q : block) mse += q.report.weight_mse / static_cast<double>(block.size());
  char line[128];
  std::snprintf(line, sizeof line, "layer %d %s  mean weight mse %.3e", layer, method, mse);
  progress.log(line);
}

}  // namespace

MethodOutput quantize_w8a8(const Model& model, const Recipe& recipe, const CalibrationSet* calibration,
                           int batch_windows, const QuantizeProgress& progress) {
  recipe.validate();
  PTQ_ASSERT(recipe.method == Method::W8A8);
  const bool statistics = recipe.needs_calibration();
  if (statistics && (calibration == nullptr || calibration->windows.empty()))
    throw input_error("w8a8 with smoothquant or tensor activations", "calibration data (--calib or --calib-ids)",
                      "none");
  const bool tensor = recipe.act_granularity == ActGranularity::Tensor;
  MethodOutput out;
  out.extras.activations = ActivationQuant{recipe.act_granularity, {}};
  RowMatrix x;
  if (statistics) x = embed_windows(model, *calibration);
  const int seq_len = statistics ? calibration->config.seqlen : 0;
  const bool sketch = tensor && recipe.act_percentile < 100.0;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    BlockWeights w = model.load_block(layer);
    if (recipe.smoothquant) {
      InputRanges ranges(false);
      run_windows(model.config(), w, x, seq_len, batch_windows, ranges, !tensor);
      smooth_block(w, ranges, *recipe.smoothquant, out.extras);
    }
    if (tensor) {  // static scales from the (smoothed) float block's inputs
      InputRanges ranges(sketch);
      run_windows(model.config(), w, x, seq_len, batch_windows, ranges, true);
      out.extras.activations->static_scales.push_back(static_scales(ranges, recipe.act_percentile));
    }
    const std::size_t first = out.linears.size();
    for (LinearRole role : all_linear_roles) out.linears.push_back(int8_linear(layer, role, w.weight(role)));
    log_block(progress, "w8a8", layer, std::span(out.linears).subspan(first));
  }
  return out;
}

std::vector<QuantizedLinear> quantize_nf4(const Model& model, const Recipe& recipe, const QuantizeProgress& progress) {
  recipe.validate();
  PTQ_ASSERT(recipe.method == Method::Nf4);
  std::vector<QuantizedLinear> out;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    const BlockWeights w = model.load_block(layer);
    const std::size_t first = out.size();
    for (LinearRole role : all_linear_roles) {
      const auto t0 = Clock::now();
      QuantizedLinear q;
      q.layer = layer;
      q.role = role;
      q.nf4 = nf4_quantize(w.weight(role), recipe.nf4);
      q.report.layer = layer;
      q.report.role = role;
      q.report.weight_mse = weight_mse(w.weight(role), q.dequantize());
      q.report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      out.push_back(std::move(q));
    }
    log_block(progress, "nf4", layer, std::span(out).subspan(first));
  }
  return out;
}

}  // namespace ptq
