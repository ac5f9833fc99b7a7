#pragma once
// A quantization recipe: every choice of a `ptq quantize` run, as data.
// Loaded from YAML (or JSON, which YAML reads too); CLI flags override fields.
// Example (recipes/*.yaml):
//   method: gptq          # rtn | gptq
//   bits: 4
//   group: 128            # a group size, "channel" or "tensor"
//   symmetric: false
//   act_order: false      # gptq: quantize columns by descending Hessian diagonal
//   static_groups: false  # gptq: group grids from the original weights
//   damp: 0.01            # gptq: fraction of the mean Hessian diagonal
//   block_size: 128       # gptq: lazy-update block
//   clip: {method: mse, steps: 100, max_shrink: 0.8, norm: 2.4, weighting: hessian}
//                         # grid ranges (algorithms/clip.hpp): none | mse | percentile (+ percentile: 0.999)
//   refit: least_squares  # none | least_squares: scales refit under H after quantizing (algorithms/refit.hpp)
//   calibration: {samples: 128, seqlen: 512, seed: 0}
#include <filesystem>
#include <string>

#include "algorithms/gptq.hpp"
#include "algorithms/refit.hpp"
#include "pipeline/calib_data.hpp"

namespace ptq {

enum class Method { Rtn, Gptq };

std::string_view method_name(Method m);

struct Recipe {
  Method method = Method::Gptq;
  QuantSpec spec;             // bits, symmetry, granularity, group size
  ColumnOrder order = ColumnOrder::Natural;
  GroupGrids group_grids = GroupGrids::Dynamic;
  double damp = 0.01;
  int block_size = 128;
  ClipConfig clip;
  ScaleRefit refit = ScaleRefit::None;  // needs calibration (H), also after RTN
  CalibConfig calibration;
  std::vector<CalibSourceSpec> sources;  // may be empty: then --calib must give them

  bool needs_calibration() const { return method != Method::Rtn || refit != ScaleRefit::None; }
  GptqConfig gptq_config() const;
  void validate() const;  // InputError naming the field
};

// InputError naming the file and key on unknown keys or bad values.
Recipe load_recipe(const std::filesystem::path& path);
// The recipe as YAML, in the same keys load_recipe reads (recorded in outputs).
std::string recipe_to_yaml(const Recipe& recipe);

// "128" -> Group/128, "channel", "tensor"; InputError otherwise.
void set_granularity(QuantSpec& spec, const std::string& group, const std::string& where);
std::string granularity_text(const QuantSpec& spec);

}  // namespace ptq
