#include "pipeline/quantize/quantize_from_stats.hpp"

#include <charconv>
#include <cmath>

#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
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
  for (int layer = 0; layer < model.num_layers(); ++layer)
    for (LinearInput input : all_linear_inputs) {
      const int want = linear_in_features(model.config(), roles_reading(input).front());
      for (std::size_t s = 0; s < stats.info.sources.size(); ++s)
        if (const int got = stats.at(layer, input, static_cast<int>(s)).in_features(); got != want)
          throw input_error(file.string() + ": layers/" + std::to_string(layer) + "/" +
                                std::string(linear_input_name(input)) + "/" + stats.info.sources[s],
                            std::to_string(want) + " input features", std::to_string(got));
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
    const BlockWeights w = model.load_block(layer);
    for (LinearInput input : all_linear_inputs) {
      std::vector<const InputStats*> sources;
      for (std::size_t s = 0; s < weights.size(); ++s)
        sources.push_back(&stats.at(layer, input, static_cast<int>(s)));
      const Eigen::MatrixXd hessian = gptq_hessian(mix_stats(sources, weights).mean_xtx);
      for (LinearRole role : roles_reading(input)) {
        out.push_back(
            quantize_linear(recipe, model.config(), layer, role, w.weight(role), &hessian));
        log_linear(progress, out.back().report);
      }
    }
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
