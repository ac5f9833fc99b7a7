#include "pipeline/quantize/linear_mix.hpp"

#include <cmath>

#include "io/error.hpp"
#include "pipeline/formats/ct_pack.hpp"
#include "pipeline/quantize/sensitivity.hpp"

namespace ptq {

using json = nlohmann::ordered_json;

LinearMix choose_linear_mix(const Model& model, const Recipe& recipe,
                            const CalibrationSet* calibration, int batch_windows,
                            const QuantizeProgress& progress) {
  PTQ_ASSERT(recipe.chooses_mix() && recipe.mix.bpw > 0);
  const ModelConfig& config = model.config();
  MixCandidates candidates;
  std::vector<Recipe> rounding;  // the recipe on each candidate's grid
  for (const std::string& name : recipe.mix_candidates()) {
    Recipe r = recipe;
    r.spec = *mix_scheme(name, recipe.spec);  // Recipe::validate checked it
    candidates.names.push_back(name);
    candidates.bits.push_back(r.spec.bits);
    rounding.push_back(std::move(r));
  }
  std::vector<TensorCosts> costs;
  std::int64_t weights = 0;
  for (int layer = 0; layer < config.num_layers; ++layer)
    for (LinearRole role : all_linear_roles) {
      const std::int64_t in = linear_in_features(config, role), out = linear_out_features(config, role);
      std::vector<std::uint64_t> bytes;
      for (const Recipe& r : rounding)
        bytes.push_back(r.spec.granularity == Granularity::Group && in % r.spec.group_size != 0
                            ? 0
                            : compressed_linear_bytes(r.spec, in, out));
      costs.emplace_back(linear_module_name(layer, role), TensorUse::linear, in * out, std::move(bytes));
      costs.back().layer = layer;
      costs.back().parts = {{layer, role}};
      weights += in * out;
    }
  const MixBudgetBytes budget{
      static_cast<std::uint64_t>(std::floor(recipe.mix.bpw * double(weights) / 8.0)), 1};
  check_mix_fits(costs, budget, 0, "--bpw " + std::to_string(recipe.mix.bpw), weights,
                 "Linear weight");

  const CandidateRounder round = [&](const TensorCosts& t, const LinearKey* part, std::size_t k,
                                     const MatrixRM& w, const Eigen::MatrixXd* h) {
    return quantize_linear(rounding[k], config, t.layer, part->role, w, h).dequantize();
  };
  const MixContext mix{model, recipe, candidates, progress};
  const int windows = mix_costs(mix, calibration, batch_windows, kLinearMixOutput, budget, round,
                                {}, costs);
  const std::vector<std::size_t> chosen = choose_mix(costs, recipe.mix.predictor, budget);
  LinearMix out;
  for (std::size_t i = 0; i < costs.size(); ++i) out.schemes[costs[i].name] = candidates.names[chosen[i]];
  json head = {{"output", kLinearMixOutput}, {"budget", {{"bpw", recipe.mix.bpw}}}};
  head["weight_budget_bytes"] = budget.bytes;
  out.json = mix_record(head, mix, costs, chosen, windows);
  return out;
}

std::map<std::string, QuantSpec, std::less<>> linear_mix_specs(const MixTypes& schemes,
                                                               const Recipe& recipe,
                                                               const ModelConfig& config,
                                                               const std::string& where) {
  std::map<std::string, QuantSpec, std::less<>> specs;
  for (int layer = 0; layer < config.num_layers; ++layer)
    for (LinearRole role : all_linear_roles) {
      const std::string name = linear_module_name(layer, role);
      const auto it = schemes.find(name);
      if (it == schemes.end()) throw input_error(where, "a scheme for " + name, "none");
      const std::optional<QuantSpec> spec = mix_scheme(it->second, recipe.spec);
      if (!spec)
        throw input_error(where + ": " + name, "a scheme w4-g<group>, w8-g<group>, w4-pc or w8-pc",
                          "\"" + it->second + "\"");
      specs[name] = *spec;
    }
  if (specs.size() != schemes.size())
    for (const auto& [name, scheme] : schemes)
      if (!specs.contains(name)) throw input_error(where, "only the model's block Linears", name);
  return specs;
}

}  // namespace ptq
