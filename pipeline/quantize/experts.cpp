#include "pipeline/quantize/experts.hpp"

#include <optional>
#include <span>

#include "calibrate/input_stats.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

void append(std::vector<QuantizedLinear>& out, std::vector<QuantizedLinear> more) {
  for (QuantizedLinear& q : more) out.push_back(std::move(q));
}

// Expert e over the calibration stream: statistics of its gate/up input, then
// of its down input through the quantized gate and up.
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
  auto input = [&](Eigen::Index b) {
    MatrixRM normed = batches.mlp_in(b);
    if (source.hessian == ExpertHessian::all_tokens) return normed;
    return gather_rows(normed, routes[static_cast<std::size_t>(b)].tokens[expert]);
  };
  InputStats in(config.hidden_size, StatsContent::hessian);
  for (Eigen::Index b = 0; b < batches.count; ++b) in.add(input(b));
  Eigen::MatrixXd hessian = gptq_hessian(in.mean_xtx());
  std::vector<QuantizedLinear> out =
      quantize_expert_linears(recipe, config, w, e, kExpertGateUp, &hessian, source, progress);
  InputStats hidden(config.moe.intermediate_size, StatsContent::hessian);
  for (Eigen::Index b = 0; b < batches.count; ++b)
    hidden.add(expert_hidden(config, w.experts[expert], input(b)));
  hessian = gptq_hessian(hidden.mean_xtx());
  append(out,
         quantize_expert_linears(recipe, config, w, e, kExpertDown, &hessian, source, progress));
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
  const std::string model = "a " + c.model_type + " model (mixture-of-experts layers)";
  auto refuse = [&](const std::string& field, const std::string& expected,
                    const std::string& found) {
    throw input_error(field + " for " + model, expected, found);
  };
  // `none` converts, which GGUF alone does for them (F16, BF16, F32).
  const bool converts = r.method == Method::None && r.format == OutputFormat::gguf;
  if (r.method == Method::Nf4 || (r.method == Method::None && !converts))
    refuse("method", "rtn, gptq, awq or w8a8 (or none into gguf)",
           std::string(method_name(r.method)));
  if (r.target != RoundingTarget::QuantizedInputs)
    refuse("target", "quantized_inputs", "float_outputs");
  if (r.mixes()) refuse("the grid", "one grid for every Linear", "a mix");
  if (r.format == OutputFormat::bnb_nf4)
    refuse("format", "dequantized, gptq, awq, compressed-tensors or gguf",
           std::string(output_format_info(r.format).name));
}

bool expert_takes_every_token(const Recipe& recipe, const ModelConfig& config,
                              std::int64_t routed) {
  const int min_tokens =
      recipe.expert_min_tokens > 0 ? recipe.expert_min_tokens : config.hidden_size;
  return recipe.expert_calibration == ExpertCalibration::all || routed < min_tokens;
}

std::vector<QuantizedLinear> quantize_expert_linears(const Recipe& recipe,
                                                     const ModelConfig& config, BlockWeights& w,
                                                     int expert, std::span<const LinearRole> roles,
                                                     const Eigen::MatrixXd* hessian,
                                                     const ExpertSource& source,
                                                     const QuantizeProgress& progress) {
  std::optional<GptqHessian> factor;
  if (hessian != nullptr && recipe.method == Method::Gptq && recipe.format != OutputFormat::gguf)
    factor = prepare_hessian(*hessian, recipe.gptq_config());
  ExpertWeights& x = w.experts.at(static_cast<std::size_t>(expert));
  std::vector<QuantizedLinear> out;
  for (LinearRole role : roles) {
    QuantizedLinear q = quantize_linear(recipe, config, w.layer, role, x.weight(role), hessian,
                                        factor ? &*factor : nullptr);
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
