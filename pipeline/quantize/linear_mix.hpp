#pragma once
// A compressed-tensors mix (--format compressed-tensors --bpw B): each block
// Linear's grid chosen among schemes vLLM serves (w4-pc, w4-g128, w8-pc,
// w8-g128: 4 or 8-bit integer weights per channel or in groups, the recipe's
// symmetry) to minimise the predicted KL with at most B bits per Linear weight,
// scales and zero points included (what the packed tensors take), by
// pipeline/quantize/sensitivity.hpp. A candidate is rounded as the final run
// rounds it: the recipe's method, clip and refit on that grid. The embeddings
// and head stay float, as in every packed Hugging Face output.
#include <string>

#include "calibrate/model.hpp"
#include "pipeline/formats/mix_file.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

inline constexpr std::string_view kLinearMixOutput = "compressed-tensors";

struct LinearMix {
  MixTypes schemes;  // module name -> scheme name
  std::string json;  // mix.json
};

// recipe.chooses_mix() with format compressed-tensors; `calibration` may be
// null when the costs are read from recipe.mix.costs. InputError naming the
// budget when every Linear at its smallest scheme exceeds it.
LinearMix choose_linear_mix(const Model& model, const Recipe& recipe,
                            const CalibrationSet* calibration, int batch_windows,
                            const QuantizeProgress& progress);

// The grids of a mix's scheme names, checked against the model: every block
// Linear named once, each scheme one mix_scheme knows (InputError naming
// `where` and the Linear otherwise).
std::map<std::string, QuantSpec, std::less<>> linear_mix_specs(const MixTypes& schemes,
                                                               const Recipe& recipe,
                                                               const ModelConfig& config,
                                                               const std::string& where);

}  // namespace ptq
