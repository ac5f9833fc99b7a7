#include "pipeline/quantize/w8a8.hpp"

#include <chrono>
#include <cstdio>

#include "algorithms/int8.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/quantize/smoothing.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

InputScales static_scales(const InputRanges& ranges, double percentile) {
  InputScales s{};
  for (int i = 0; i < linear_input_count; ++i)
    s[i] = int8_scale(ranges.magnitude(static_cast<LinearInput>(i), percentile));
  return s;
}

// Linear `key` of block w, int8 per output channel (an expert's as well).
QuantizedLinear int8_linear(BlockWeights& w, const LinearKey& key) {
  const auto t0 = Clock::now();
  const MatrixRM& weight = w.weight(key);
  QuantizedLinear q{key.layer, key.role, int8_quantize_rows(weight), {}, key.expert};
  finish_report(q, weight, t0);
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

// NF4 of one block's Linears (a mixture layer's experts each on its own). A
// fused module (Phi-3's qkv_proj, gate_up_proj) is quantized whole, as
// bitsandbytes quantizes the module it stores, then cut into its parts, which
// keep the module's absmax offset and second-level scales.
void nf4_block(const ModelConfig& c, const BlockWeights& w, int layer, const Nf4Config& config,
               std::vector<QuantizedLinear>& out) {
  const std::vector<LinearKey> keys = block_linears(c, layer);
  for (std::size_t i = 0, end = 0; i < keys.size(); i = end) {
    const auto t0 = Clock::now();
    const std::string module = linear_weight_module(c, keys[i]);
    for (end = i + 1; end < keys.size() && linear_weight_module(c, keys[end]) == module;) ++end;
    if (end == i + 1) {
      const MatrixRM& weight = w.weight(keys[i]);
      QuantizedLinear q{layer, keys[i].role, nf4_quantize(weight, config), {}, keys[i].expert};
      finish_report(q, weight, t0);
      out.push_back(std::move(q));
      continue;
    }
    const LinearStorage stored = linear_storage(c, keys[i].role);
    MatrixRM whole(stored.rows, w.weight(keys[i]).cols());
    for (std::size_t k = i; k < end; ++k)
      whole.middleRows(linear_storage(c, keys[k].role).first_row, w.weight(keys[k]).rows()) =
          w.weight(keys[k]);
    const Nf4Matrix fused = nf4_quantize(whole, config);
    for (std::size_t k = i; k < end; ++k) {
      const MatrixRM& part = w.weight(keys[k]);
      QuantizedLinear q{
          layer,
          keys[k].role,
          nf4_slice_rows(fused, static_cast<int>(linear_storage(c, keys[k].role).first_row),
                         static_cast<int>(part.rows()), module + ".weight"),
          {}};
      finish_report(q, part, t0);
      out.push_back(std::move(q));
    }
  }
}

}  // namespace

MethodOutput quantize_w8a8(const Model& model, const Recipe& recipe, const CalibrationSet* calibration,
                           int batch_windows, const std::vector<BlockScales>* replay, const QuantizeProgress& progress) {
  recipe.validate();
  PTQ_ASSERT(recipe.method == Method::W8A8);
  const bool tensor = recipe.act_granularity == ActGranularity::Tensor;
  const bool statistics =
      recipe.needs_calibration(replay != nullptr ? ScaleSource::replay : ScaleSource::search);
  if (statistics && (calibration == nullptr || calibration->windows.empty()))
    throw input_error("w8a8 with smoothquant or tensor activations", "calibration data (--calib or --calib-ids)",
                      "none");
  MethodOutput out;
  out.extras.activations = ActivationQuant{recipe.act_granularity, {}};
  MatrixRM x;
  if (statistics) x = embed_windows(model, *calibration);
  const int seq_len = statistics ? calibration->config.seqlen : 0;
  const bool sketch = tensor && recipe.act_percentile < 100.0;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    BlockWeights w = model.load_block(layer);
    if (recipe.smoothquant) {
      out.extras.scales.push_back(replay ? replay->at(static_cast<std::size_t>(layer))
                                      : smoothquant_block(model.config(), w, x, seq_len, batch_windows,
                                                          *recipe.smoothquant,
                                                          tensor ? StreamUpdate::keep : StreamUpdate::advance));
      apply_block_scales(w, out.extras.scales.back(), recipe.spec);
    }
    if (tensor) {  // static scales from the (smoothed) float block's inputs
      InputRanges ranges(sketch);
      forward_windows(model.config(), w, x, {seq_len, batch_windows, {}}, &ranges, StreamUpdate::advance);
      out.extras.activations->static_scales.push_back(static_scales(ranges, recipe.act_percentile));
    }
    std::vector<QuantizedLinear> block;
    for (const LinearKey& key : block_linears(model.config(), layer))
      block.push_back(int8_linear(w, key));
    log_block(progress, "w8a8", layer, block);
    for (auto& q : block) out.linears.add(std::move(q));
  }
  return out;
}

std::vector<QuantizedLinear> quantize_nf4(const Model& model, const Recipe& recipe, const QuantizeProgress& progress) {
  recipe.validate();
  PTQ_ASSERT(recipe.method == Method::Nf4);
  std::vector<QuantizedLinear> out;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    const std::size_t first = out.size();
    nf4_block(model.config(), model.load_block(layer), layer, recipe.nf4, out);
    log_block(progress, "nf4", layer, std::span(out).subspan(first));
  }
  return out;
}

}  // namespace ptq
