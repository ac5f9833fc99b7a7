#include "pipeline/recipe/recipe.hpp"

#include <cmath>
#include <regex>
#include <sstream>
#include <utility>

#include "algorithms/quantized_weight.hpp"
#include "io/error.hpp"
#include "io/gguf.hpp"
#include "pipeline/formats/bnb_pack.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_policy.hpp"
#include "pipeline/recipe/name_table.hpp"

namespace ptq {

using recipe_detail::choice_name;
using recipe_detail::name_list;
using recipe_detail::named;

namespace {

constexpr std::pair<const char*, Method> kMethods[] = {
    {"rtn", Method::Rtn},   {"gptq", Method::Gptq}, {"awq", Method::Awq},
    {"w8a8", Method::W8A8}, {"nf4", Method::Nf4},   {"none", Method::None}};
constexpr std::pair<const char*, Scaling> kScalings[] = {
    {"none", Scaling::None}, {"awq", Scaling::Awq}, {"smoothquant", Scaling::SmoothQuant}};

}  // namespace

std::string_view scaling_name(Scaling s) { return choice_name(s, kScalings); }

Scaling parse_scaling(const std::string& name, const std::string& where) {
  return named(name, where, "one of " + name_list(kScalings, ", "), kScalings);
}

std::string_view method_name(Method m) { return choice_name(m, kMethods); }

std::string method_names() { return name_list(kMethods, ", "); }

Method parse_method(const std::string& name, const std::string& where) {
  return named(name, where, "one of " + method_names(), kMethods);
}

bool Recipe::needs_calibration(ScaleSource scales) const {
  const bool searched = scales == ScaleSource::search;
  switch (method) {
    case Method::Nf4:
    case Method::None:
      return false;
    case Method::W8A8:
      return act_granularity == ActGranularity::Tensor || (smoothquant.has_value() && searched);
    case Method::Rtn:
    case Method::Gptq:
    case Method::Awq:
      return needs_statistics() || (folds_scales() && searched) || measures_mix_costs();
  }
  return true;
}

WeightGrid Recipe::weight_grid() const {
  switch (method) {
    case Method::None:
      return WeightGrid::float_copy;
    case Method::Nf4:
      return WeightGrid::nf4;
    case Method::Rtn:
    case Method::Gptq:
    case Method::Awq:
      return format == OutputFormat::gguf ? WeightGrid::ggml : WeightGrid::uniform;
    case Method::W8A8:
      return WeightGrid::uniform;
  }
  return WeightGrid::uniform;
}

QuantSpec Recipe::quant_spec() const { return method == Method::Awq ? awq_spec() : spec; }

QuantSpec Recipe::awq_spec() const {
  QuantSpec s = spec;
  if (!ggml_range(s.range)) s.range = RangeRule::MinMax;
  return s;
}

GptqConfig Recipe::gptq_config() const {
  GptqConfig c;
  c.damp = damp;
  c.block_size = block_size;
  c.order = order;
  // GGUF: GPTQ rounds onto ggml's grids (algorithms/ggml_gptq.hpp), whose
  // scales are ggml's own; group_grids says where they come from.
  if (format == OutputFormat::gguf) return c;
  c.spec = spec;
  c.group_grids = group_grids;
  c.clip = clip;
  return c;
}

void Recipe::apply_implied_defaults() {
  if (scaling == Scaling::SmoothQuant && !smoothquant) smoothquant = SmoothQuantConfig{};
  // A GPTQ checkpoint stores float16 scales: the grids are fitted with them.
  if (packed_hf_format(format)) spec.scale_storage = ScaleStorage::f16;
  // AWQ into GGUF rounds onto the exact grid of the type's block Linears (GPTQ
  // rounds onto each Linear's own ggml grid: algorithms/ggml_gptq.hpp).
  if (format == OutputFormat::gguf && method == Method::Awq) {
    const GgufPolicy* policy = find_policy(gguf_type);
    const auto grid = policy != nullptr ? gguf_grid(policy->base_type) : std::nullopt;
    const auto grid_spec = grid ? ggml_uniform_spec(*grid) : std::nullopt;
    if (grid_spec) spec = *grid_spec;
  }
}

std::optional<std::string> Recipe::resolve_format() {
  if (format_given) return std::nullopt;
  std::vector<OutputFormat> candidates;
  switch (method) {
    case Method::Rtn:
    case Method::Gptq:
      candidates = {OutputFormat::gptq};
      break;
    case Method::Awq:
      candidates = {OutputFormat::awq, OutputFormat::gptq};
      break;
    case Method::W8A8:
      candidates = {OutputFormat::compressed_tensors};
      break;
    case Method::Nf4:
      candidates = {OutputFormat::bnb_nf4};
      break;
    case Method::None:
      break;
  }
  std::string why;
  for (OutputFormat f : candidates) {
    Recipe trial = *this;
    trial.format = f;
    trial.apply_implied_defaults();
    try {  // the format's own checks say what it cannot hold
      trial.validate_format();
      format = f;
      return std::nullopt;
    } catch (const InputError& e) {
      why += (why.empty() ? "" : "; ") + std::string(e.what());
    }
  }
  format = OutputFormat::dequantized;
  if (why.empty()) return std::nullopt;
  return "writing the dequantized format: " + why;
}

void Recipe::validate() const {
  spec.validate();
  calibration.validate();
  require_clip_applies(clip, spec, "recipe: clip");
  if (method == Method::Gptq) gptq_config().validate();
  if (uses_awq()) {
    awq_spec().validate();
    if (awq_search_windows < 0)
      throw input_error("AwqOptions.search_windows", ">= 0", std::to_string(awq_search_windows));
  }
  // Method awq advances the calibration stream through the float block, so no
  // statistics of the quantized block's inputs exist for a refit.
  if (method == Method::Awq && refit != ScaleRefit::None)
    throw input_error("refit", "none with method awq (it searches on the float stream)",
                      "least_squares");
  if (target != RoundingTarget::QuantizedInputs && method != Method::Gptq)
    throw input_error("target", "quantized_inputs with method " + std::string(method_name(method)),
                      "float_outputs (a GPTQ target)");
  if (expert_min_tokens < 0)
    throw input_error("experts.min_tokens", "a number of tokens >= 0",
                      std::to_string(expert_min_tokens));
  if (!(target_damp > 0.0))
    throw input_error("target_damp", "a number > 0", std::to_string(target_damp));
  if (code_sweeps < 0 || (code_sweeps != 0 && method != Method::Gptq))
    throw input_error(
        "code_sweeps", "a count >= 0, and 0 unless method gptq",
        std::to_string(code_sweeps) + " with method " + std::string(method_name(method)));
  if (smoothquant) smoothquant->validate();
  if (scaling != Scaling::None && method != Method::Rtn && method != Method::Gptq)
    throw input_error("scaling", "none with method " + std::string(method_name(method)),
                      std::string(scaling_name(scaling)));
  if (scaling == Scaling::SmoothQuant && !smoothquant)
    throw input_error("scaling", "smoothquant.alpha with scaling smoothquant",
                      "no smoothquant key");
  if (smoothquant && method != Method::W8A8 && scaling != Scaling::SmoothQuant)
    throw input_error("smoothquant", "method w8a8 or scaling smoothquant",
                      "method " + std::string(method_name(method)) + " with scaling " +
                          std::string(scaling_name(scaling)));
  if (!(act_percentile > 0.0 && act_percentile <= 100.0))
    throw input_error("activations.percentile", "a number in (0, 100]",
                      std::to_string(act_percentile));
  nf4.validate();
  validate_format();
}

// The format's table accepts the method's grid; a GGUF output names a type
// llama-quantize knows, which GPTQ can round onto when the method is gptq.
void Recipe::validate_format() const {
  const OutputFormatInfo& f = output_format_info(format);
  if (!accepts(format, weight_grid()))
    throw input_error("format " + std::string(f.name),
                      "a method whose grid it stores (" + std::string(f.description) + ")",
                      "method " + std::string(method_name(method)) + ", which leaves " +
                          std::string(weight_grid_name(weight_grid())));
  if (format != OutputFormat::gguf && (!gguf_type.empty() || !imatrix.empty()))
    throw input_error("gguf_type / imatrix", "format gguf", "format " + std::string(f.name));
  if (gguf_refit != GgmlRefit::SubBlockScales && (format != OutputFormat::gguf || method != Method::Gptq))
    throw input_error("gguf_refit", "format gguf with method gptq",
                      "format " + std::string(f.name) + ", method " + std::string(method_name(method)));
  if (mix.given() && format != OutputFormat::gguf && format != OutputFormat::compressed_tensors)
    throw input_error("mix", "format gguf or compressed-tensors", "format " + std::string(f.name));
  if (format == OutputFormat::compressed_tensors && mix.given()) validate_mix();
  if (format == OutputFormat::bnb_nf4) require_bnb_packable(nf4, "format bnb-nf4");
  if (packed_hf_format(format) && weight_grid() == WeightGrid::uniform) validate_packed_format();
  if (format != OutputFormat::gguf) return;
  // From here the format table has left methods rtn, gptq and none.
  if (gguf_type == "auto") return validate_mix();
  if (mix.given())
    throw input_error("mix", "gguf_type auto", "gguf_type \"" + gguf_type + "\"");
  const GgufPolicy* policy = find_policy(gguf_type);
  if (policy == nullptr)
    throw input_error("gguf_type", "a llama-quantize type such as Q4_K_M, Q4_0 or F16",
                      "\"" + gguf_type + "\"");
  const bool none = method == Method::None;
  if (none != (policy->rules.empty() && gguf_float_type(policy->base_type)))
    throw input_error("gguf_type " + gguf_type,
                      none ? "F16, BF16 or F32 with method none"
                           : "a quantized type (method none converts to F16, BF16 or F32)",
                      none ? "a quantized type" : "a float type");
  if (method == Method::Awq) {
    const auto grid = gguf_grid(policy->base_type);
    if (!grid || !ggml_uniform_spec(*grid))
      throw input_error("gguf_type " + gguf_type,
                        "a type AWQ rounds onto (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)",
                        grid ? std::string(ggml_grid_info(*grid).name) : "a float type");
  }
  std::string tuned;  // what ggml's fixed scale rules leave no room for
  auto note = [&tuned](bool set, const std::string& what) {
    if (set) tuned += (tuned.empty() ? "" : ", ") + what;
  };
  note(scaling != Scaling::None, "scaling " + std::string(scaling_name(scaling)));
  note(refit != ScaleRefit::None, "a refit");
  note(clip.method != ClipMethod::None, "a clip");
  note(code_sweeps != 0, "code sweeps");
  if (!tuned.empty())
    throw input_error("format gguf",
                      "no scaling, refit, clip or code sweeps (ggml's grids fix the scale rule)",
                      tuned);
  // With method awq every block Linear must be AWQ's (its scales are folded in),
  // and an imatrix would give some of them llama-quantize's types of another grid.
  if (!imatrix.empty() && (none || method == Method::Awq))
    throw input_error("imatrix", "method rtn or gptq (importance-weighted ggml rounding)",
                      "method " + std::string(method_name(method)));
}

std::vector<std::string> Recipe::mix_candidates() const {
  if (!mix.candidates.empty()) return mix.candidates;
  if (format == OutputFormat::gguf) return {"Q2_K", "Q3_K", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K", "Q8_0"};
  return {"w4-pc", "w4-g128", "w8-pc", "w8-g128"};
}

std::optional<QuantSpec> mix_scheme(const std::string& name, const QuantSpec& base) {
  static const std::regex kScheme(R"(w([48])-(pc|g([1-9][0-9]{0,4})))");
  std::smatch m;
  if (!std::regex_match(name, m, kScheme)) return std::nullopt;
  QuantSpec s = base;
  s.bits = std::stoi(m[1]);
  s.granularity = m[2] == "pc" ? Granularity::Channel : Granularity::Group;
  if (s.granularity == Granularity::Group) s.group_size = std::stoi(m[3]);
  return s;
}

QuantSpec Recipe::linear_spec_for(int layer, LinearRole role) const {
  if (linear_specs.empty()) return spec;
  const auto it = linear_specs.find(linear_module_name(layer, role));
  PTQ_ASSERT(it != linear_specs.end());  // the mix types every block Linear
  return it->second;
}

// A mix: rounding that any candidate can take (GPTQ or RTN; GPTQ inside the
// ggml grids for GGUF), one budget or a choice to replay, candidates of the format.
void Recipe::validate_mix() const {
  const std::string where = format == OutputFormat::gguf ? "gguf_type auto" : "a compressed-tensors mix";
  if (method != Method::Gptq && method != Method::Rtn)
    throw input_error(where, "method gptq or rtn", "method " + std::string(method_name(method)));
  const int given = (mix.max_bytes != 0) + (mix.bpw != 0) + !mix.types.empty();
  if (given != 1)
    throw input_error(where,
                      "one of mix.max_bytes (--max-bytes), mix.bpw (--bpw) or mix.types (--mix-types)",
                      std::to_string(given) + " of them");
  if (mix.max_bytes != 0 && format != OutputFormat::gguf)
    throw input_error("mix.max_bytes", "format gguf (compressed-tensors budgets bits per Linear weight: --bpw)",
                      "format compressed-tensors");
  if (mix.bpw < 0 || !std::isfinite(mix.bpw))
    throw input_error("mix.bpw", "a positive number of bits", std::to_string(mix.bpw));
  if (mix.windows < 1) throw input_error("mix.windows", "at least 1", std::to_string(mix.windows));
  const auto candidates = mix_candidates();
  for (const std::string& name : candidates) {
    const gguf::TensorTypeInfo* type = gguf::find_tensor_type(name);
    const bool ok = format == OutputFormat::gguf ? type != nullptr && gguf_grid(type->id).has_value()
                                                 : mix_scheme(name, spec).has_value();
    if (!ok)
      throw input_error("mix.candidates",
                        format == OutputFormat::gguf
                            ? "quantized GGUF types ptq writes (Q4_K, IQ4_XS, ...)"
                            : "compressed-tensors schemes w4-g<group>, w8-g<group>, w4-pc or w8-pc",
                        "\"" + name + "\"");
  }
}

// The packed Hugging Face layouts: GPTQ's 2, 3, 4 or 8-bit codes; AWQ's 4-bit
// asymmetric groups; compressed-tensors' pack-quantized 4 or 8-bit ones, per
// channel or group, and its int-quantized W8A8 (int8 weights and activations).
void Recipe::validate_packed_format() const {
  const std::string where = "format " + std::string(output_format_info(format).name);
  if (method == Method::W8A8) {
    if (format == OutputFormat::compressed_tensors) return;  // int-quantized
    throw input_error(where, "a weight-only method (rtn, gptq, awq)",
                      "method w8a8, whose int8 activations only compressed-tensors states");
  }
  const QuantSpec s = quant_spec();
  const std::string bits = std::to_string(s.bits) + " bits";
  if (s.granularity == Granularity::Tensor)
    throw input_error(where, "group or channel granularity",
                      "tensor (no per-tensor grid in the format)");
  switch (format) {
    case OutputFormat::gptq:
      if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
        throw input_error(where, "bits 2, 3, 4 or 8", bits);
      return;
    case OutputFormat::awq:
      if (s.bits != 4 || s.symmetry != Symmetry::Asymmetric || s.granularity != Granularity::Group)
        throw input_error(where, "4-bit asymmetric groups (AWQ's GEMM layout)",
                          bits + ", " + granularity_text(s));
      break;
    default:
      if (s.bits != 4 && s.bits != 8) throw input_error(where, "bits 4 or 8", bits);
      break;
  }
  // Act-order with static groups keeps every column in group c / group_size, which
  // needs no g_idx; dynamic groups need one (compressed-tensors 0.20 dropped its
  // "group" actorder, AWQ never had one).
  if (order == ColumnOrder::ActivationOrder && s.granularity == Granularity::Group &&
      group_grids != GroupGrids::Static)
    throw input_error(where,
                      "act-order with static groups (--static-groups): the format stores no g_idx",
                      "act-order with dynamic groups");
}

void set_granularity(QuantSpec& spec, const std::string& group, const std::string& where) {
  if (group == "channel") {
    spec.granularity = Granularity::Channel;
  } else if (group == "tensor") {
    spec.granularity = Granularity::Tensor;
  } else {
    std::size_t used = 0;
    int size = 0;
    try {
      size = std::stoi(group, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != group.size() || size < 1)
      throw input_error(where, "a group size >= 1, \"channel\" or \"tensor\"", "\"" + group + "\"");
    spec.granularity = Granularity::Group;
    spec.group_size = size;
  }
}

std::string granularity_text(const QuantSpec& spec) {
  switch (spec.granularity) {
    case Granularity::Channel:
      return "channel";
    case Granularity::Tensor:
      return "tensor";
    case Granularity::Group:
      return std::to_string(spec.group_size);
  }
  return "?";
}

ActGranularity parse_act_granularity(const std::string& text, const std::string& where) {
  if (text == "token") return ActGranularity::Token;
  if (text == "tensor") return ActGranularity::Tensor;
  throw input_error(where, "token or tensor", "\"" + text + "\"");
}

std::string recipe_title(const Recipe& r) {
  std::ostringstream out;
  out << method_name(r.method);
  switch (r.method) {
    case Method::W8A8:
      if (r.smoothquant) out << " SmoothQuant alpha " << r.smoothquant->alpha << ",";
      out << " int8 activations per " << act_granularity_name(r.act_granularity);
      break;
    case Method::Nf4:
      out << " (block " << r.nf4.block_size << ")";
      break;
    case Method::None:
      break;
    case Method::Rtn:
    case Method::Gptq:
    case Method::Awq:
      if (r.mixes()) {
        out << " mix";
        if (r.mix.bpw != 0) out << " at " << r.mix.bpw << " bits per weight";
        if (r.mix.max_bytes != 0) out << " within " << r.mix.max_bytes << " bytes";
      } else if (r.format == OutputFormat::gguf) {
        out << " " << r.gguf_type;
      } else {
        out << " W" << r.spec.bits << " (group " << granularity_text(r.spec) << ")";
      }
      break;
  }
  return out.str();
}

}  // namespace ptq
