#pragma once
// A quantization recipe: every choice of a `ptq quantize` run, as data.
// Loaded from YAML (or JSON, which YAML reads too); CLI flags override fields.
// Example (recipes/*.yaml):
//   method: gptq          # rtn | gptq | awq (AWQ scales and clip, then RTN on the min/max grid)
//   scaling: none         # none | awq | smoothquant: scales folded in before rtn/gptq
//                         # (AWQ's searched scales and clip, or SmoothQuant's with
//                         smoothquant.alpha)
//   awq_clip: true        # awq: search clipping bounds after the scales
//   awq_search_windows: 16  # awq: windows compared in the attention/MLP scale searches (0 = all)
//   bits: 4
//   group: 128            # a group size, "channel" or "tensor"
//   symmetric: false
//   act_order: false      # gptq: quantize columns by descending Hessian diagonal
//   static_groups: false  # gptq: group grids from the original weights
//   damp: 0.01            # gptq: fraction of the mean Hessian diagonal
//   block_size: 128       # gptq: lazy-update block
//   clip: {method: mse, steps: 100, max_shrink: 0.8, norm: 2.4, weighting: hessian}
//                         # grid ranges (algorithms/clip.hpp): none | mse | percentile (+
//                         percentile: 0.999)
//   refit: least_squares  # none | least_squares: scales refit under H after quantizing
//   target: quantized_inputs  # gptq: float_outputs = GPTAQ's target (RoundingTarget)
//   target_damp: 1.0      # float_outputs: the correction's damping, fraction of mean diag H
//   code_sweeps: 0        # gptq: coordinate-descent sweeps over the codes after rounding
//   experts: {calibration: routed, min_tokens: 0}  # mixture-of-experts layers (ExpertCalibration)
//   (algorithms/refit.hpp) calibration: {samples: 128, seqlen: 512, seed: 0}
// W8A8 (int8 per-channel weights, int8 activations) and NF4 take their own keys:
//   method: w8a8
//   smoothquant: {alpha: 0.5}                         # absent = naive W8A8
//   activations: {granularity: token, percentile: 100}  # token (dynamic) | tensor (static)
//   method: nf4
//   block: 64             # weights per absmax (double-quantized in blocks of 256)
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "algorithms/awq.hpp"
#include "algorithms/ggml_gptq.hpp"
#include "algorithms/gptq.hpp"
#include "algorithms/nf4.hpp"
#include "algorithms/refit.hpp"
#include "algorithms/smoothquant.hpp"
#include "calibrate/act_quant.hpp"
#include "calibrate/tensor_names.hpp"
#include "pipeline/formats/gguf_types.hpp"
#include "pipeline/formats/output_formats.hpp"
#include "pipeline/recipe/calib_data.hpp"

namespace ptq {

// None: no rounding, a float conversion (--format gguf with a float --gguf-type).
enum class Method { Rtn, Gptq, Awq, W8A8, Nf4, None };
// A weight transform searched before rounding (method awq implies Awq).
enum class Scaling { None, Awq, SmoothQuant };
// What GPTQ's rounding of a Linear reproduces: its float weights applied to the
// quantized model's inputs X~ (the reference), or the float model's outputs X W^T
// from X~ (GPTAQ, algorithms/gptq.hpp float_output_target), for which a float
// stream runs beside the quantized one.
enum class RoundingTarget { QuantizedInputs, FloatOutputs };
// Whose inputs form a mixture-of-experts expert's statistics: the tokens the
// router sends to it, or every calibration token (all-expert routing; the
// stream still advances through the routed experts).
enum class ExpertCalibration { routed, all };

// Where folded scales come from: searched on calibration activations, or
// replayed from an earlier output (--load-scales).
enum class ScaleSource { search, replay };

std::string_view method_name(Method m);
// "rtn" -> Method::Rtn, ...; InputError naming `where` otherwise.
Method parse_method(const std::string& name, const std::string& where);
std::string method_names();  // "rtn, gptq, awq, w8a8, nf4"
std::string_view scaling_name(Scaling s);
// "none" | "awq" | "smoothquant"; InputError naming `where` otherwise.
Scaling parse_scaling(const std::string& name, const std::string& where);

// What predicts a tensor's cost at a candidate grid when a mix is chosen
// (pipeline/quantize/sensitivity.hpp): its Hessian-weighted output error; that
// error scaled by the KL the tensor alone causes at one candidate; or the KL it
// alone causes, measured at every candidate.
enum class MixPredictor { output_error, kl_scaled, kl };
std::string_view mix_predictor_name(MixPredictor predictor);  // "kl_scaled", ...

// A mix: each quantized tensor's grid chosen among `candidates` to minimise the
// predicted KL divergence under one budget, or replayed from an earlier run's
// mix.json (`types`). GGUF (gguf_type auto): every weight tensor's type, under
// the file's bytes or bits per weight over all its tensors. compressed-tensors:
// each block Linear's scheme (w4-g128, w8-pc, ...), under bits per Linear
// weight with its scales and zero points.
struct MixBudget {
  std::uint64_t max_bytes = 0;          // GGUF only; 0: not this budget
  double bpw = 0;                       // 0: not this budget
  std::vector<std::string> candidates;  // empty: the format's default (Recipe::mix_candidates)
  MixPredictor predictor = MixPredictor::kl_scaled;
  int windows = 8;  // calibration windows the KL is measured on (the first ones)
  // An earlier mix's mix.json whose measured costs are solved again (another
  // budget or predictor: nothing measured); empty = measure.
  std::filesystem::path costs;
  std::filesystem::path types;  // an earlier mix's mix.json to replay

  bool given() const { return max_bytes != 0 || bpw != 0 || !types.empty(); }
};

struct Recipe {
  Method method = Method::Gptq;
  QuantSpec spec;  // bits, symmetry, granularity, group size
  ColumnOrder order = ColumnOrder::Natural;
  GroupGrids group_grids = GroupGrids::Dynamic;
  double damp = 0.01;
  int block_size = 128;
  Scaling scaling = Scaling::None;
  AwqClipMode awq_clip = AwqClipMode::Search;
  int awq_search_windows = 16;  // see AwqOptions::search_windows (0 = all windows)
  ClipConfig clip;
  ScaleRefit refit =
      ScaleRefit::None;  // needs calibration (H), also after RTN; not with method awq
  RoundingTarget target = RoundingTarget::QuantizedInputs;
  // float_outputs: the damping of GPTAQ's correction (float_output_target), a
  // fraction of the mean Hessian diagonal. 1.0 was chosen on validation text
  // (docs/bench/tuning.md): 0.1 fits the calibration text's outputs and loses
  // on other text, 3 gives up most of the gain.
  double target_damp = 1.0;
  // gptq: sweeps of coordinate descent over each Linear's codes after GPTQ,
  // grids fixed (descend_codes, algorithms/refit.hpp); 0 = none.
  int code_sweeps = 0;
  // Mixture-of-experts layers (statistics): whose inputs form each expert's
  // Hessian, and the fewest routed tokens for its own; an expert routed fewer
  // takes every token's (0: the model's hidden size, the rank of a full
  // gate/up Hessian).
  ExpertCalibration expert_calibration = ExpertCalibration::routed;
  int expert_min_tokens = 0;
  CalibConfig calibration;
  std::vector<CalibSourceSpec> sources;  // may be empty: then --calib must give them
  // w8a8 (spec is ignored: weights are int8 per output channel, symmetric), or
  // scaling smoothquant: migrate scales into the norms first; none = naive W8A8.
  std::optional<SmoothQuantConfig> smoothquant;
  ActGranularity act_granularity = ActGranularity::Token;
  double act_percentile = 100.0;  // Tensor: scale from this percentile of |x| (100 = absmax)
  Nf4Config nf4;                  // nf4 (spec is ignored)
  OutputFormat format = OutputFormat::dequantized;
  bool format_given = false;  // by the recipe file or --format (else resolve_format picks it)
  // Each key the recipe file or a flag set, and where ("recipe.yaml: bits",
  // "--bits"): check_given_keys_apply refuses those the final recipe ignores.
  std::vector<std::pair<std::string_view, std::string>> given_keys;
  // gguf: llama-quantize's type name ("Q4_K_M", "Q4_0", "F16"; pipeline/formats/
  // gguf_policy.hpp): every tensor's GGUF type. RTN rounds with ggml's own
  // quantizers (llama-quantize's bytes); GPTQ and AWQ round the block Linears
  // onto the exact grid of Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0.
  std::string gguf_type;
  GgmlRefit gguf_refit = GgmlRefit::SubBlockScales;  // gguf with method gptq: see GgmlGptqConfig
  // gguf: llama.cpp's GGUF importance matrix for ggml's importance-weighted
  // rounding (RTN), as llama-quantize --imatrix; empty = none.
  std::filesystem::path imatrix;
  // A mix of grids (see MixBudget); its choice is set by the run (not keys):
  // GGUF, each tensor's type id by GGUF name; compressed-tensors, each block
  // Linear's grid by module name ("model.layers.0.mlp.down_proj").
  MixBudget mix;
  GgufTypeMap gguf_tensor_types;
  std::map<std::string, QuantSpec, std::less<>> linear_specs;

  // Without a given format, the packed one that fits the method: gptq for rtn
  // and gptq, awq for awq (gptq when AWQ's layout cannot hold the grid),
  // compressed-tensors for w8a8, bnb-nf4 for nf4; dequantized for none, and when
  // no packed format holds the grid. Returns why it fell back, if it did.
  std::optional<std::string> resolve_format();

  // Whether the run needs calibration activations: the one place that decides.
  // GPTQ and the refit need input statistics; searched scales need the float
  // stream (replayed ones do not); W8A8's static activation scales need it too.
  bool needs_calibration(ScaleSource scales = ScaleSource::search) const;
  // Whether the grids are a mix (gguf_type auto, or compressed-tensors with a
  // budget); chosen before rounding (not replayed), from costs measured on the
  // calibration data (not read from mix.costs).
  bool mixes() const {
    return (format == OutputFormat::gguf && gguf_type == "auto") ||
           (format == OutputFormat::compressed_tensors && mix.given());
  }
  bool chooses_mix() const { return mixes() && mix.types.empty(); }
  bool measures_mix_costs() const { return chooses_mix() && mix.costs.empty(); }
  std::vector<std::string> mix_candidates() const;
  // The grid of a block Linear: linear_specs' when the mix set it, else spec.
  QuantSpec linear_spec_for(int layer, LinearRole role) const;
  bool uses_awq() const { return method == Method::Awq || scaling == Scaling::Awq; }
  // Scales are folded into the weights before rounding (AWQ's or SmoothQuant's):
  // saved under awq/ in quantized.h5 and replayable with --load-scales.
  bool folds_scales() const {
    return uses_awq() || scaling == Scaling::SmoothQuant || (method == Method::W8A8 && smoothquant);
  }
  // Whether the Linears' input statistics are gathered on the stream (GPTQ's
  // Hessians, or H for the scale refit).
  bool needs_statistics() const { return method == Method::Gptq || refit != ScaleRefit::None; }
  // Whether a step after the rounding reads the input's H (the least-squares
  // refit, the code sweeps), so it must outlive GPTQ's factor of it.
  bool reads_hessian_after_rounding() const {
    return refit == ScaleRefit::LeastSquares || code_sweeps > 0;
  }
  // What the method leaves in the weights (checked against the format's table).
  WeightGrid weight_grid() const;
  // The grid of the final rounding: method awq uses awq_spec().
  QuantSpec quant_spec() const;
  // The grid AWQ searches and rounds on: llm-awq's min/max grid, or the exact
  // ggml grid of a GGUF type.
  QuantSpec awq_spec() const;
  GptqConfig gptq_config() const;
  // Defaults one key implies for another, for recipe files and flags alike:
  // scaling smoothquant without smoothquant.alpha takes alpha 0.5.
  void apply_implied_defaults();
  void validate() const;  // InputError naming the field

 private:
  void validate_format() const;
  void validate_packed_format() const;
  void validate_mix() const;
};

// A compressed-tensors mix candidate's grid: "w4-g128", "w8-g64" (groups) or
// "w4-pc", "w8-pc" (per output channel), with `base`'s symmetry and scale
// storage; nullopt for any other name.
std::optional<QuantSpec> mix_scheme(const std::string& name, const QuantSpec& base);

// One line naming the scheme, e.g. "gptq W4 (group 128)", "w8a8 SmoothQuant alpha 0.5,
// int8 activations per token", "nf4 (block 64)" (model card titles).
std::string recipe_title(const Recipe& recipe);

// One recipe field: its YAML path ("bits", "clip.method", "calibration.seed"),
// its `ptq quantize` flag, how it is set from text (a YAML scalar or a flag's
// value) and written. recipe_keys() is the one table the YAML reader, the YAML
// writer and the CLI flags walk (pipeline/recipe/recipe_keys.cpp); a new field
// is a new row. calibration.sources, a list, is read and written beside it.
enum class FlagKind { none, value, set_true, set_false };  // set_*: a flag without a value
struct RecipeKey {
  std::string_view path;
  std::string_view flag;  // "" when the key has no flag
  FlagKind flag_kind = FlagKind::none;
  std::string_view help;
  // InputError naming `where` when `text` is not a value of the field.
  void (*set)(Recipe& recipe, const std::string& text, const std::string& where);
  std::string (*text)(const Recipe& recipe);  // the value as recipe_to_yaml writes it
  bool (*written)(const Recipe& recipe);      // whether recipe_to_yaml writes it
};
const std::vector<RecipeKey>& recipe_keys();

// InputError naming where a key was given (file and key, or flag) when the
// recipe ignores it: --bits with w8a8 or nf4, --act-order without gptq, a GGUF
// key without --format gguf, clip keys without clip.method, ...
void check_given_keys_apply(const Recipe& recipe);

// InputError naming the file and key on unknown keys or bad values.
Recipe load_recipe(const std::filesystem::path& path);
// The same from YAML text (a record's recipe attribute); `where` names it in errors.
Recipe recipe_from_yaml(const std::string& text, const std::string& where);
// The recipe as YAML, in the same keys load_recipe reads (recorded in outputs).
std::string recipe_to_yaml(const Recipe& recipe);

// "128" -> Group/128, "channel", "tensor"; InputError otherwise.
void set_granularity(QuantSpec& spec, const std::string& group, const std::string& where);
std::string granularity_text(const QuantSpec& spec);
// "token" | "tensor"; InputError naming `where` otherwise.
ActGranularity parse_act_granularity(const std::string& text, const std::string& where);

}  // namespace ptq
