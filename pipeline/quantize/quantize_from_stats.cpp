#include "pipeline/quantize/quantize_from_stats.hpp"

#include <charconv>
#include <cmath>

#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/quantize/experts.hpp"
#include "pipeline/recipe/provenance.hpp"

namespace ptq {

MixWeight parse_mix_spec(std::string_view spec) {
  const auto eq = spec.find('=');
  MixWeight m;
  if (eq == std::string_view::npos || eq == 0)
    throw input_error("--mix " + std::string(spec), "NAME=WEIGHT", "no NAME=");
  m.source = std::string(spec.substr(0, eq));
  const std::string_view number = spec.substr(eq + 1);
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), m.weight);
  if (ec != std::errc() || end != number.data() + number.size())
    throw input_error("--mix " + std::string(spec), "a number after '='",
                      "\"" + std::string(number) + "\"");
  return m;
}

namespace {

std::string names_text(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::vector<double> named_weights(const CalibStatsInfo& info, std::span<const MixWeight> mix,
                                  const std::filesystem::path& file) {
  std::vector<double> weights(info.sources.size(), 0.0);
  std::vector<char> seen(info.sources.size(), 0);
  for (const auto& m : mix) {
    std::size_t s = 0;
    while (s < info.sources.size() && info.sources[s] != m.source) ++s;
    if (s == info.sources.size())
      throw input_error("--mix " + m.source,
                        "a source of " + file.string() + " (" + names_text(info.sources) + ")",
                        "\"" + m.source + "\"");
    if (seen[s]) throw input_error("--mix " + m.source, "each source named once", "it twice");
    seen[s] = 1;
    weights[s] = m.weight;
  }
  return weights;
}

// GPTQ's Hessian of one input, its sources' statistics mixed with `weights`.
Eigen::MatrixXd mixed_hessian(const std::vector<InputStats>& per_source,
                              std::span<const double> weights) {
  std::vector<const InputStats*> sources;
  for (const InputStats& s : per_source) sources.push_back(&s);
  return gptq_hessian(mix_stats(sources, weights).mean_xtx);
}

// A mixture layer's experts under the recipe's rule (experts.hpp): routed
// statistics, or every token's (the layer's mlp_in, the expert's
// mlp_hidden_all) when asked for, when fewer than experts.min_tokens were
// routed, or when a weighted source routed it none (its average is undefined).
void quantize_experts_from_stats(const ModelConfig& c, const Recipe& recipe,
                                 const CalibrationStats& stats, std::span<const double> weights,
                                 BlockWeights& w, std::vector<QuantizedLinear>& out,
                                 const QuantizeProgress& progress) {
  const auto layer = static_cast<std::size_t>(w.layer);
  for (std::size_t e = 0; e < stats.experts[layer].size(); ++e) {
    const ExpertInputStats& s = stats.experts[layer][e];
    std::int64_t routed = 0;
    bool unseen = false;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      if (weights[i] == 0) continue;
      routed += s.mlp_in[i].tokens;
      unseen |= s.mlp_in[i].tokens == 0;
    }
    const ExpertHessian from = unseen || expert_takes_every_token(recipe, c, routed)
                                   ? ExpertHessian::all_tokens
                                   : ExpertHessian::routed;
    const bool all = from == ExpertHessian::all_tokens;
    const auto expert = static_cast<int>(e);
    Eigen::MatrixXd h = mixed_hessian(
        all ? stats.layers[layer][static_cast<std::size_t>(LinearInput::mlp_in)] : s.mlp_in,
        weights);
    for (QuantizedLinear& q :
         quantize_expert_linears(recipe, c, w, expert, kExpertGateUp, &h, {routed, from}, progress))
      out.push_back(std::move(q));
    h = mixed_hessian(all ? s.mlp_hidden_all : s.mlp_hidden, weights);
    for (QuantizedLinear& q :
         quantize_expert_linears(recipe, c, w, expert, kExpertDown, &h, {routed, from}, progress))
      out.push_back(std::move(q));
  }
}

}  // namespace

std::vector<double> resolve_mix(const CalibStatsInfo& info, std::span<const MixWeight> mix,
                                const std::filesystem::path& file) {
  const std::vector<double> weights = mix.empty() ? info.weights : named_weights(info, mix, file);
  const std::string where =
      mix.empty() ? file.string() + ": calibration/sources/*@weight" : std::string("--mix");
  double total = 0.0;
  for (std::size_t s = 0; s < weights.size(); ++s) {
    if (!std::isfinite(weights[s]) || weights[s] < 0.0)
      throw input_error(where, "a finite weight >= 0 for source " + info.sources[s],
                        std::to_string(weights[s]));
    total += weights[s];
  }
  if (total <= 0.0)
    throw input_error(where, "at least one source of non-zero weight", "all weights zero");
  return weights;
}

void check_stats_fit(const CalibrationStats& stats, const Model& model,
                     const std::filesystem::path& file) {
  const std::string hash = model_hash(model.path());
  if (stats.info.source_model_hash != hash)
    throw input_error(
        file.string() + "@source_model_hash",
        "statistics of " + model.path().string() + " (hash " + hash + ")",
        "hash " + stats.info.source_model_hash + " (another model: run ptq calibrate on this one)");
  if (static_cast<int>(stats.layers.size()) != model.num_layers())
    throw input_error(file.string() + ": layers", std::to_string(model.num_layers()) + " layers",
                      std::to_string(stats.layers.size()));
  const ModelConfig& c = model.config();
  auto check = [&](const std::vector<InputStats>& per_source, int want, const std::string& group) {
    if (per_source.size() != stats.info.sources.size())
      throw input_error(file.string() + ": " + group, "statistics of every source",
                        std::to_string(per_source.size()) + " sources");
    for (std::size_t s = 0; s < per_source.size(); ++s)
      if (const int got = per_source[s].in_features(); got != want)
        throw input_error(file.string() + ": " + group + "/" + stats.info.sources[s],
                          std::to_string(want) + " input features", std::to_string(got));
  };
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    const std::string prefix = "layers/" + std::to_string(layer) + "/";
    const auto& experts = stats.experts.at(static_cast<std::size_t>(layer));
    if (static_cast<int>(experts.size()) != (c.is_moe(layer) ? c.moe.experts : 0))
      throw input_error(file.string() + ": " + prefix + "experts",
                        std::to_string(c.is_moe(layer) ? c.moe.experts : 0) + " experts",
                        std::to_string(experts.size()));
    for (LinearInput input : all_linear_inputs)
      if (!c.is_moe(layer) || input != LinearInput::mlp_hidden)
        check(stats.layers[static_cast<std::size_t>(layer)][static_cast<std::size_t>(input)],
              input_features(c, input), prefix + std::string(linear_input_name(input)));
    for (std::size_t e = 0; e < experts.size(); ++e) {
      const std::string group = prefix + "experts/" + std::to_string(e) + "/";
      check(experts[e].mlp_in, c.hidden_size, group + "mlp_in");
      check(experts[e].mlp_hidden, c.moe.intermediate_size, group + "mlp_hidden");
      check(experts[e].mlp_hidden_all, c.moe.intermediate_size, group + "mlp_hidden_all");
    }
  }
}

void check_recipe_for_stats(const Recipe& recipe) {
  if (recipe.folds_scales())
    throw input_error(
        "--stats", "a recipe without scaling (its search needs the activations themselves)",
        std::string(scaling_name(recipe.uses_awq() ? Scaling::Awq : recipe.scaling)) + " scaling");
  if (recipe.target == RoundingTarget::FloatOutputs)
    throw input_error("--stats",
                      "target quantized_inputs (statistics hold the float model's inputs alone)",
                      "target float_outputs");
  switch (recipe.method) {
    case Method::Gptq:
      return;
    case Method::Rtn:
      if (recipe.refit != ScaleRefit::None) return;
      throw input_error("--stats", "a method that uses input statistics (gptq, or rtn with refit)",
                        "rtn, which uses none");
    case Method::Awq:
    case Method::W8A8:
    case Method::Nf4:
    case Method::None:
      throw input_error("--stats", "gptq (or rtn with refit)",
                        std::string(method_name(recipe.method)));
  }
}

std::vector<QuantizedLinear> quantize_from_stats(const Model& model, const Recipe& recipe,
                                                 const CalibrationStats& stats,
                                                 std::span<const double> weights,
                                                 const QuantizeProgress& progress) {
  recipe.validate();
  check_recipe_for_stats(recipe);
  PTQ_ASSERT(weights.size() == stats.info.sources.size());
  std::vector<QuantizedLinear> out;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    BlockWeights w = model.load_block(layer);
    const bool moe = model.config().is_moe(layer);
    for (LinearInput input : all_linear_inputs) {
      if (moe && (input == LinearInput::mlp_in || input == LinearInput::mlp_hidden)) continue;
      const Eigen::MatrixXd hessian = mixed_hessian(
          stats.layers[static_cast<std::size_t>(layer)][static_cast<std::size_t>(input)], weights);
      for (LinearRole role : roles_reading(input)) {
        out.push_back(
            quantize_linear(recipe, model.config(), layer, role, w.weight(role), &hessian));
        log_linear(progress, out.back().report);
      }
    }
    if (moe) quantize_experts_from_stats(model.config(), recipe, stats, weights, w, out, progress);
  }
  return out;
}

StatsQuantizeResult quantize_from_stats_file(const Model& model, const Recipe& recipe,
                                             const std::filesystem::path& file,
                                             std::span<const MixWeight> mix,
                                             const QuantizeProgress& progress) {
  check_recipe_for_stats(recipe);
  const CalibrationStats stats = load_calibration_stats(file);
  check_stats_fit(stats, model, file);
  const std::vector<double> weights = resolve_mix(stats.info, mix, file);
  StatsQuantizeResult r;
  r.record = {file, stats.info.sources, weights, {}};
  for (std::size_t s = 0; s < weights.size(); ++s)
    r.record.tokens.push_back(stats.at(0, LinearInput::attention_in, static_cast<int>(s)).tokens);
  r.linears = quantize_from_stats(model, recipe, stats, weights, progress);
  return r;
}

}  // namespace ptq
