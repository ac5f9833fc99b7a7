#include "pipeline/quantize/experts.hpp"

#include <functional>
#include <optional>
#include <span>

#include "calibrate/input_stats.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

void append(std::vector<QuantizedLinear>& out, std::vector<QuantizedLinear> more) {
  for (QuantizedLinear& q : more) out.push_back(std::move(q));
}

using BatchInput = std::function<MatrixRM(Eigen::Index batch)>;

// An expert input's Hessian over the batches and, when the float model's input
// is given (target float_outputs), GPTAQ's correction.
struct ExpertInput {
  Eigen::MatrixXd hessian;
  std::optional<MatrixRM> correction;
};

ExpertInput expert_input(const Recipe& recipe, int features, Eigen::Index batches,
                         const BatchInput& quantized, const BatchInput& float_input) {
  InputStats stats(features, StatsContent::hessian);
  std::optional<FloatOutputCross> cross;
  if (float_input) cross.emplace(features);
  for (Eigen::Index b = 0; b < batches; ++b) {
    const MatrixRM x = quantized(b);
    stats.add(x);
    if (cross) cross->add(x, float_input(b));
  }
  ExpertInput in{gptq_hessian(stats.mean_xtx()), std::nullopt};
  if (cross) in.correction = cross->correction(in.hessian, recipe.target_damp);
  return in;
}

const MatrixRM* correction_of(const ExpertInput& in) {
  return in.correction ? &*in.correction : nullptr;
}

// Expert e over the calibration stream: statistics of its gate/up input, then
// of its down input through the quantized gate and up. With the float model's
// input, the float expert (a copy taken before rounding) gives GPTAQ's targets.
std::vector<QuantizedLinear> quantize_expert(const Recipe& recipe, const ModelConfig& config,
                                             BlockWeights& w, const ExpertBatches& batches,
                                             const std::vector<Routing>& routes, int e,
                                             const QuantizeProgress& progress) {
  const auto expert = static_cast<std::size_t>(e);
  ExpertSource source{0, ExpertHessian::routed};
  for (const Routing& r : routes)
    source.routed_tokens += static_cast<std::int64_t>(r.tokens[expert].size());
  if (expert_takes_every_token(recipe, config, source.routed_tokens))
    source.hessian = ExpertHessian::all_tokens;
  auto rows = [&](const BatchInput& stream) -> BatchInput {
    if (!stream) return {};
    return [&, stream](Eigen::Index b) {
      MatrixRM normed = stream(b);
      if (source.hessian == ExpertHessian::all_tokens) return normed;
      return gather_rows(normed, routes[static_cast<std::size_t>(b)].tokens[expert]);
    };
  };
  const BatchInput input = rows(batches.mlp_in), float_input = rows(batches.float_mlp_in);
  const ExpertWeights float_expert = float_input ? w.experts[expert] : ExpertWeights{};
  const ExpertInput in =
      expert_input(recipe, config.hidden_size, batches.count, input, float_input);
  std::vector<QuantizedLinear> out = quantize_expert_linears(
      recipe, config, w, e, kExpertGateUp, &in.hessian, source, progress, correction_of(in));
  auto hidden_of = [&](const ExpertWeights& weights, const BatchInput& x) -> BatchInput {
    if (!x) return {};
    return [&config, expert = &weights, x](Eigen::Index b) {
      return expert_hidden(config, *expert, x(b));
    };
  };
  const ExpertInput hidden =
      expert_input(recipe, config.moe.intermediate_size, batches.count,
                   hidden_of(w.experts[expert], input), hidden_of(float_expert, float_input));
  append(out, quantize_expert_linears(recipe, config, w, e, kExpertDown, &hidden.hessian, source,
                                      progress, correction_of(hidden)));
  return out;
}

}  // namespace

void require_expert_support(const ModelConfig& c, const Recipe& r) {
  if (!c.has_moe()) {  // the experts keys would be ignored
    for (const auto& [path, where] : r.given_keys)
      if (path.starts_with("experts."))
        throw input_error(
            where, "a key this " + c.model_type + " model uses",
            "\"" + std::string(path) + "\", which only mixture-of-experts layers read");
    return;
  }
  // transformers (5.17 with bitsandbytes 0.50.2, measured) makes 4-bit
  // Linears of nn.Linear modules only: its fused expert modules keep their
  // weights in float, so a file of NF4 experts does not load there.
  if (r.format == OutputFormat::bnb_nf4)
    throw input_error("format for a " + c.model_type + " model (mixture-of-experts layers)",
                      "gptq, awq, compressed-tensors, gguf or dequantized (NF4 experts: the "
                      "record)",
                      "bnb-nf4, whose loader keeps experts in float");
  // compressed-tensors' mix chooses a grid per block Linear, not per expert.
  if (r.mixes() && r.format != OutputFormat::gguf)
    throw input_error("the grid for a " + c.model_type + " model (mixture-of-experts layers)",
                      "one grid for every Linear, or a GGUF mix",
                      "a mix into " + std::string(output_format_info(r.format).name));
}

bool expert_takes_every_token(const Recipe& recipe, const ModelConfig& config,
                              std::int64_t routed) {
  const int min_tokens =
      recipe.expert_min_tokens > 0 ? recipe.expert_min_tokens : config.hidden_size;
  return recipe.expert_calibration == ExpertCalibration::all || routed < min_tokens;
}

std::vector<QuantizedLinear> quantize_expert_linears(
    const Recipe& recipe, const ModelConfig& config, BlockWeights& w, int expert,
    std::span<const LinearRole> roles, const Eigen::MatrixXd* hessian, const ExpertSource& source,
    const QuantizeProgress& progress, const MatrixRM* correction) {
  std::optional<GptqHessian> factor;
  if (hessian != nullptr && recipe.method == Method::Gptq && recipe.format != OutputFormat::gguf)
    factor = prepare_hessian(*hessian, recipe.gptq_config());
  ExpertWeights& x = w.experts.at(static_cast<std::size_t>(expert));
  std::vector<QuantizedLinear> out;
  for (LinearRole role : roles) {
    QuantizedLinear q = quantize_toward(recipe, config, w.layer, role, x.weight(role), hessian,
                                        factor ? &*factor : nullptr, correction);
    q.expert = q.report.expert = expert;
    q.report.routed_tokens = source.routed_tokens;
    q.report.expert_hessian = source.hessian;
    x.weight(role) = q.dequantize();
    log_linear(progress, q.report);
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<QuantizedLinear> quantize_experts(const Recipe& recipe, const ModelConfig& config,
                                              BlockWeights& w, const ExpertBatches* batches,
                                              const QuantizeProgress& progress) {
  std::vector<QuantizedLinear> out;
  if (batches == nullptr) {
    for (int e = 0; e < config.moe.experts; ++e)
      append(out,
             quantize_expert_linears(recipe, config, w, e, expert_roles, nullptr, {}, progress));
    return out;
  }
  // The routing reads only the MLP input and the float router: once for all experts.
  std::vector<Routing> routes;
  for (Eigen::Index b = 0; b < batches->count; ++b)
    routes.push_back(route_tokens(config, w, batches->mlp_in(b)));
  for (int e = 0; e < config.moe.experts; ++e)
    append(out, quantize_expert(recipe, config, w, *batches, routes, e, progress));
  for (Eigen::Index b = 0; b < batches->count; ++b)
    batches->add(b, moe_output(config, w, batches->mlp_in(b)));
  return out;
}

}  // namespace ptq
