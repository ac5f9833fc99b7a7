// The recipe key table: each recipe field once, with its YAML path, its CLI
// flag, its help text, how it is set from text and how it is written. The
// YAML reader, the YAML writer and `ptq quantize`'s flags all walk this table.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <sstream>

#include "io/error.hpp"
#include "pipeline/recipe/name_table.hpp"
#include "pipeline/recipe/recipe.hpp"
#include "pipeline/recipe/yaml_strict.hpp"

namespace ptq {

using recipe_detail::choice_name;
using recipe_detail::name_list;
using recipe_detail::named;
using recipe_detail::NameTable;

namespace {

constexpr std::pair<const char*, Scaling> kScalingNames[] = {
    {"none", Scaling::None}, {"awq", Scaling::Awq}, {"smoothquant", Scaling::SmoothQuant}};
constexpr std::pair<const char*, ClipMethod> kClipMethods[] = {
    {"none", ClipMethod::None}, {"mse", ClipMethod::Mse}, {"percentile", ClipMethod::Percentile}};
constexpr std::pair<const char*, ClipWeighting> kClipWeightings[] = {
    {"uniform", ClipWeighting::Uniform}, {"hessian", ClipWeighting::Hessian}};
constexpr std::pair<const char*, ScaleRefit> kRefits[] = {
    {"none", ScaleRefit::None}, {"least_squares", ScaleRefit::LeastSquares}};
constexpr std::pair<const char*, RoundingTarget> kTargets[] = {
    {"quantized_inputs", RoundingTarget::QuantizedInputs},
    {"float_outputs", RoundingTarget::FloatOutputs}};
constexpr std::pair<const char*, ExpertCalibration> kExpertCalibrations[] = {
    {"routed", ExpertCalibration::routed}, {"all", ExpertCalibration::all}};
constexpr std::pair<const char*, GgmlRefit> kGgmlRefits[] = {
    {"none", GgmlRefit::None}, {"scales", GgmlRefit::Scales}, {"sub_scales", GgmlRefit::SubBlockScales}};

// A scalar of type T from its text (YAML's own conversions, so a recipe file
// and a flag accept the same spellings).
template <class T>
T scalar(const std::string& text, const std::string& where, const char* expected) {
  try {
    return YAML::Node(text).as<T>();
  } catch (const YAML::Exception&) {
    throw input_error(where, expected, "\"" + text + "\"");
  }
}

template <class E, std::size_t N>
E choice(const std::string& text, const std::string& where, const NameTable<E, N>& names) {
  return named(text, where, name_list(names, " | "), names);
}

template <class T>
std::string text_of(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

std::string bool_text(bool b) { return b ? "true" : "false"; }

// A YAML double-quoted scalar that reads back as `text`, whatever it holds
// (a '"', a '\\', a control character or a YAML indicator such as '!').
std::string quoted(const std::string& text) {
  std::string out(1, '"');
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char escape[5];
      std::snprintf(escape, sizeof escape, "\\x%02x", static_cast<unsigned char>(c));
      out += escape;
    } else {
      out += c;
    }
  }
  out.push_back('"');
  return out;
}

bool always(const Recipe&) { return true; }
bool has_bits(const Recipe& r) {
  return r.method != Method::W8A8 && r.method != Method::Nf4 && r.method != Method::None;
}
bool gptq(const Recipe& r) { return r.method == Method::Gptq; }
bool w8a8(const Recipe& r) { return r.method == Method::W8A8; }
bool awq(const Recipe& r) { return r.uses_awq(); }
bool clipped(const Recipe& r) { return r.clip.method != ClipMethod::None; }
bool gguf_format(const Recipe& r) { return r.format == OutputFormat::gguf; }
bool chooses_mix(const Recipe& r) { return r.chooses_mix(); }

constexpr std::pair<const char*, MixPredictor> kMixPredictors[] = {
    {"output_error", MixPredictor::output_error},
    {"kl_scaled", MixPredictor::kl_scaled},
    {"kl", MixPredictor::kl}};

// "Q3_K, Q4_K" -> {"Q3_K", "Q4_K"}.
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

SmoothQuantConfig& smoothquant_of(Recipe& r) {
  if (!r.smoothquant) r.smoothquant = SmoothQuantConfig{};
  return *r.smoothquant;
}

}  // namespace

std::string_view mix_predictor_name(MixPredictor predictor) {
  return choice_name(predictor, kMixPredictors);
}

// Each row: path, flag, flag kind, help, set, text, written. Rows are in the
// order recipe_to_yaml writes them; a section's keys are adjacent.
const std::vector<RecipeKey>& recipe_keys() {
  using F = FlagKind;
  static const std::vector<RecipeKey> keys = {
      {"method", "--method", F::value,
       "rtn, gptq, awq, w8a8, nf4, none (awq: AWQ scales and clip, then RTN; none: --format gguf "
       "float types)",
       [](Recipe& r, const std::string& t, const std::string& w) { r.method = parse_method(t, w); },
       [](const Recipe& r) { return std::string(method_name(r.method)); }, always},
      {"smoothquant.alpha", "--smoothquant", F::value,
       "w8a8 or --scaling smoothquant: SmoothQuant migration strength alpha in [0, 1] (default "
       "0.5)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         smoothquant_of(r).alpha = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.smoothquant->alpha); },
       [](const Recipe& r) { return r.smoothquant.has_value(); }},
      {"activations.granularity", "--act-granularity", F::value,
       "w8a8: int8 activations per token (dynamic) or tensor (static)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.act_granularity = parse_act_granularity(t, w);
       },
       [](const Recipe& r) { return std::string(act_granularity_name(r.act_granularity)); }, w8a8},
      {"activations.percentile", "--act-percentile", F::value,
       "w8a8 tensor: static scale from this percentile of |x|",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.act_percentile = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.act_percentile); }, w8a8},
      {"block", "--nf4-block", F::value, "nf4: weights per absmax block",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.nf4.block_size = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.nf4.block_size); },
       [](const Recipe& r) { return r.method == Method::Nf4; }},
      {"bits", "--bits", F::value, "Bits per weight (2..8)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.spec.bits = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.spec.bits); }, has_bits},
      {"group", "--group", F::value, "Group size, 'channel' or 'tensor'",
       [](Recipe& r, const std::string& t, const std::string& w) { set_granularity(r.spec, t, w); },
       [](const Recipe& r) { return granularity_text(r.spec); }, has_bits},
      {"symmetric", "--sym", F::set_true, "Symmetric grid",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.spec.symmetry =
             scalar<bool>(t, w, "true or false") ? Symmetry::Symmetric : Symmetry::Asymmetric;
       },
       [](const Recipe& r) { return bool_text(r.spec.symmetry == Symmetry::Symmetric); }, has_bits},
      {"act_order", "--act-order", F::set_true,
       "GPTQ: quantize columns by descending Hessian diagonal",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.order = scalar<bool>(t, w, "true or false") ? ColumnOrder::ActivationOrder
                                                       : ColumnOrder::Natural;
       },
       [](const Recipe& r) { return bool_text(r.order == ColumnOrder::ActivationOrder); }, gptq},
      {"static_groups", "--static-groups", F::set_true,
       "GPTQ: group grids from the original weights",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.group_grids =
             scalar<bool>(t, w, "true or false") ? GroupGrids::Static : GroupGrids::Dynamic;
       },
       [](const Recipe& r) { return bool_text(r.group_grids == GroupGrids::Static); }, gptq},
      {"damp", "--damp", F::value, "GPTQ damping, fraction of the mean Hessian diagonal",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.damp = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.damp); }, gptq},
      {"block_size", "", F::none, "GPTQ: columns per lazy-update block",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.block_size = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.block_size); }, gptq},
      {"scaling", "--scaling", F::value,
       "none, awq or smoothquant: fold AWQ's scales (and clip) or SmoothQuant's scales in before "
       "rtn/gptq",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.scaling = choice(t, w, kScalingNames);
       },
       [](const Recipe& r) { return std::string(scaling_name(r.scaling)); },
       [](const Recipe& r) { return r.scaling != Scaling::None; }},
      {"awq_clip", "--no-awq-clip", F::set_false, "AWQ: skip the clipping search",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.awq_clip = scalar<bool>(t, w, "true or false") ? AwqClipMode::Search : AwqClipMode::None;
       },
       [](const Recipe& r) { return bool_text(r.awq_clip == AwqClipMode::Search); }, awq},
      {"awq_search_windows", "--awq-search-windows", F::value,
       "AWQ: windows compared in the attention/MLP scale searches (0 = all, as the reference)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.awq_search_windows = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.awq_search_windows); }, awq},
      {"clip.method", "", F::none, "grid ranges: none | mse | percentile (algorithms/clip.hpp)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.method = choice(t, w, kClipMethods);
       },
       [](const Recipe& r) { return std::string(choice_name(r.clip.method, kClipMethods)); },
       clipped},
      {"clip.steps", "", F::none, "clip search: candidate ranges",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.steps = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.clip.steps); }, clipped},
      {"clip.max_shrink", "", F::none, "clip search: smallest range tried, as a fraction",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.max_shrink = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.clip.max_shrink); }, clipped},
      {"clip.norm", "", F::none, "clip search: the error's norm exponent",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.norm = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.clip.norm); }, clipped},
      {"clip.weighting", "", F::none, "clip search: uniform | hessian (weights by diag H)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.weighting = choice(t, w, kClipWeightings);
       },
       [](const Recipe& r) { return std::string(choice_name(r.clip.weighting, kClipWeightings)); },
       clipped},
      {"clip.percentile", "", F::none, "percentile clip: the kept fraction",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.clip.percentile = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.clip.percentile); }, clipped},
      {"refit", "", F::none, "none | least_squares: scales refit under H (algorithms/refit.hpp)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.refit = choice(t, w, kRefits);
       },
       [](const Recipe& r) { return std::string(choice_name(r.refit, kRefits)); },
       [](const Recipe& r) { return r.refit != ScaleRefit::None; }},
      {"target", "", F::none,
       "gptq: quantized_inputs | float_outputs: what rounding reproduces (float_outputs: the "
       "float model's outputs, GPTAQ)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.target = choice(t, w, kTargets);
       },
       [](const Recipe& r) { return std::string(choice_name(r.target, kTargets)); },
       [](const Recipe& r) {
         return r.method == Method::Gptq && r.target != RoundingTarget::QuantizedInputs;
       }},
      {"target_damp", "", F::none,
       "target float_outputs: the correction's damping, fraction of the mean Hessian diagonal",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.target_damp = scalar<double>(t, w, "a number");
       },
       [](const Recipe& r) { return text_of(r.target_damp); },
       [](const Recipe& r) {
         return r.method == Method::Gptq && r.target == RoundingTarget::FloatOutputs;
       }},
      {"code_sweeps", "", F::none,
       "gptq: sweeps of coordinate descent over the codes after rounding, grids fixed (0 = none)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.code_sweeps = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.code_sweeps); },
       [](const Recipe& r) { return r.method == Method::Gptq && r.code_sweeps != 0; }},
      {"experts.calibration", "--expert-calibration", F::value,
       "mixture-of-experts layers: routed | all: each expert's statistics from the tokens routed "
       "to it, or from every calibration token",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.expert_calibration = choice(t, w, kExpertCalibrations);
       },
       [](const Recipe& r) {
         return std::string(choice_name(r.expert_calibration, kExpertCalibrations));
       },
       [](const Recipe& r) {
         return r.needs_statistics() && r.expert_calibration != ExpertCalibration::routed;
       }},
      {"experts.min_tokens", "--expert-min-tokens", F::value,
       "mixture-of-experts layers: an expert routed fewer calibration tokens takes every token's "
       "statistics (default 0: the model's hidden size)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.expert_min_tokens = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.expert_min_tokens); },
       [](const Recipe& r) { return r.needs_statistics() && r.expert_min_tokens != 0; }},
      {"format", "--format", F::value,
       "Output format: gptq, awq, compressed-tensors, bnb-nf4, gguf or dequantized (float16 "
       "folder + codes in quantized.h5); default: the packed format that fits the method (gptq "
       "for rtn and gptq, awq, compressed-tensors for w8a8, bnb-nf4 for nf4)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.format = parse_output_format(t, w);
         r.format_given = true;
       },
       [](const Recipe& r) { return std::string(output_format_info(r.format).name); },
       [](const Recipe&) { return true; }},
      {"gguf_type", "--gguf-type", F::value,
       "gguf: llama-quantize's type (Q4_K_M, Q4_0, Q8_0, IQ4_XS, F16, ...) for every tensor, "
       "or auto: each tensor's type chosen under --max-bytes or --bpw (or replayed, --mix-types)",
       [](Recipe& r, const std::string& t, const std::string&) { r.gguf_type = t; },
       [](const Recipe& r) { return r.gguf_type; }, gguf_format},
      {"gguf_refit", "--gguf-refit", F::value,
       "gguf with method gptq: what is refit under H after rounding, codes fixed: none, scales "
       "(each block's d and dmin) or sub_scales (default: also the k-quants' and IQ4_XS's "
       "sub-block scales and mins)",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.gguf_refit = choice(t, w, kGgmlRefits);
       },
       [](const Recipe& r) { return std::string(choice_name(r.gguf_refit, kGgmlRefits)); },
       [](const Recipe& r) { return r.gguf_refit != GgmlRefit::SubBlockScales; }},
      {"mix.max_bytes", "--max-bytes", F::value,
       "gguf_type auto: the GGUF file's size at most, in bytes",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.mix.max_bytes = scalar<std::uint64_t>(t, w, "a number of bytes");
       },
       [](const Recipe& r) { return text_of(r.mix.max_bytes); },
       [](const Recipe& r) { return r.mix.max_bytes != 0; }},
      {"mix.bpw", "--bpw", F::value,
       "A mix's budget in bits per weight: GGUF (gguf_type auto), over all tensors (ptq "
       "inspect's figure); compressed-tensors, per block Linear weight with scales and zeros",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.mix.bpw = scalar<double>(t, w, "a number of bits");
       },
       [](const Recipe& r) { return text_of(r.mix.bpw); },
       [](const Recipe& r) { return r.mix.bpw != 0; }},
      {"mix.candidates", "--mix-candidates", F::value,
       "A mix's candidate grids, comma-separated: GGUF types (default "
       "Q2_K,Q3_K,IQ4_XS,Q4_K,Q5_K,Q6_K,Q8_0) or compressed-tensors schemes (default "
       "w4-pc,w4-g128,w8-pc,w8-g128)",
       [](Recipe& r, const std::string& t, const std::string&) {
         r.mix.candidates = split_list(t);
       },
       [](const Recipe& r) { return quoted(join_list(r.mix_candidates())); }, chooses_mix},
      {"mix.predictor", "--mix-predictor", F::value,
       "A mix's cost predictor: output_error | kl_scaled | kl (docs/quantize.md, \"Mixes\")",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.mix.predictor = choice(t, w, kMixPredictors);
       },
       [](const Recipe& r) { return std::string(choice_name(r.mix.predictor, kMixPredictors)); },
       chooses_mix},
      {"mix.windows", "--sensitivity-windows", F::value,
       "A mix: calibration windows the KL of each tensor is measured on",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.mix.windows = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.mix.windows); }, chooses_mix},
      {"mix.costs", "--mix-costs", F::value,
       "A mix solved again from the costs an earlier mix measured (its mix.json), without "
       "measuring",
       [](Recipe& r, const std::string& t, const std::string&) { r.mix.costs = t; },
       [](const Recipe& r) { return quoted(r.mix.costs.string()); },
       [](const Recipe& r) { return !r.mix.costs.empty(); }},
      {"mix.types", "--mix-types", F::value, "Replay the grids of an earlier mix (its mix.json)",
       [](Recipe& r, const std::string& t, const std::string&) { r.mix.types = t; },
       [](const Recipe& r) { return quoted(r.mix.types.string()); },
       [](const Recipe& r) { return !r.mix.types.empty(); }},
      {"imatrix", "--imatrix", F::value,
       "gguf: llama.cpp's GGUF importance matrix for ggml's importance-weighted rounding",
       [](Recipe& r, const std::string& t, const std::string&) { r.imatrix = t; },
       [](const Recipe& r) { return quoted(r.imatrix.string()); },
       [](const Recipe& r) { return !r.imatrix.empty(); }},
      {"calibration.samples", "--samples", F::value, "Calibration windows in all",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.calibration.samples = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.calibration.samples); }, always},
      {"calibration.seqlen", "--seqlen", F::value, "Tokens per calibration window",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.calibration.seqlen = scalar<int>(t, w, "an integer");
       },
       [](const Recipe& r) { return text_of(r.calibration.seqlen); }, always},
      {"calibration.seed", "--seed", F::value, "Seed of the window draw from text sources",
       [](Recipe& r, const std::string& t, const std::string& w) {
         r.calibration.seed = scalar<std::uint64_t>(t, w, "an integer >= 0");
       },
       [](const Recipe& r) { return text_of(r.calibration.seed); }, always},
  };
  return keys;
}

namespace {

// The part of a key's path before its first '.', or "" for a top-level key.
std::string_view section_of(std::string_view path) {
  const auto dot = path.find('.');
  return dot == std::string_view::npos ? std::string_view() : path.substr(0, dot);
}

// calibration.sources is a list of {name, path, weight} maps, the one key that
// is not a scalar.
constexpr std::string_view kSourcesPath = "calibration.sources";

void read_sources(const YAML::Node& node, Recipe& r, const std::string& where) {
  if (!node.IsSequence())
    throw input_error(where, "a list of {name, path, weight}", "another YAML type");
  for (const auto& s : node) {
    if (!s.IsMap()) throw input_error(where, "a mapping {name, path, weight}", "another YAML type");
    // Not Scalar() unchecked: it throws YAML::InvalidNode for a missing key and
    // gives "" for a list.
    const auto text = [&](const char* key) {
      const YAML::Node value = s[key];
      if (!value || !value.IsScalar())
        throw input_error(where + "." + key, "a single value", "none or another YAML type");
      return value.Scalar();
    };
    CalibSourceSpec spec;
    spec.name = scalar<std::string>(text("name"), where + ".name", "a string");
    spec.path = scalar<std::string>(text("path"), where + ".path", "a string");
    if (s["weight"]) spec.weight = scalar<double>(text("weight"), where + ".weight", "a number");
    r.sources.push_back(spec);
  }
}

void write_sources(std::ostringstream& out, const Recipe& r) {
  if (r.sources.empty()) return;
  out << "  sources:\n";
  for (const auto& s : r.sources)
    out << "    - {name: " << quoted(s.name) << ", path: " << quoted(s.path.string())
        << ", weight: " << s.weight << "}\n";
}

// The names a mapping at `prefix` ("" or "clip.") may hold, sorted.
std::string known_names(const std::string& prefix) {
  std::vector<std::string> names;
  for (const RecipeKey& key : recipe_keys()) {
    const std::string_view path = key.path;
    if (path.substr(0, prefix.size()) != prefix) continue;
    const std::string_view rest = path.substr(prefix.size());
    names.emplace_back(rest.substr(0, rest.find('.')));
  }
  if (prefix == "calibration.") names.emplace_back("sources");
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  return list;
}

const RecipeKey* find_key(std::string_view path) {
  for (const RecipeKey& key : recipe_keys())
    if (key.path == path) return &key;
  return nullptr;
}

bool is_section(std::string_view name) {
  for (const RecipeKey& key : recipe_keys())
    if (section_of(key.path) == name) return true;
  return false;
}

// Reads every key of the mapping `node` at `prefix` into r.
void read_mapping(const YAML::Node& node, const std::string& prefix, const std::string& file,
                  Recipe& r) {
  const std::string where =
      prefix.empty() ? file : file + ": " + prefix.substr(0, prefix.size() - 1);
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())  // as<std::string>() would throw YAML::TypedBadConversion
      throw input_error(where, "keys that are names", "a key of another YAML type");
    const std::string name = kv.first.Scalar();
    const std::string path = prefix + name;
    const std::string key_where = file + ": " + path;
    if (prefix.empty() && is_section(name)) {
      if (!kv.second.IsMap()) throw input_error(key_where, "a mapping", "another YAML type");
      if (name == "smoothquant") smoothquant_of(r);  // present: SmoothQuant, alpha defaulted
      read_mapping(kv.second, path + ".", file, r);
    } else if (path == kSourcesPath) {
      read_sources(kv.second, r, key_where);
    } else if (const RecipeKey* key = find_key(path)) {
      if (!kv.second.IsScalar())
        throw input_error(key_where, "a single value", "another YAML type");
      key->set(r, kv.second.Scalar(), key_where);
      r.given_keys.emplace_back(key->path, key_where);
    } else {
      throw input_error(where + ": key \"" + name + "\"", "one of " + known_names(prefix),
                        "an unknown key");
    }
  }
}

Recipe recipe_from_node(const YAML::Node& root, const std::string& where) {
  if (!root.IsMap()) throw input_error(where, "a mapping of recipe keys", "another YAML type");
  Recipe r;
  read_mapping(root, "", where, r);
  r.apply_implied_defaults();
  r.validate();
  return r;
}

bool mix_format(const Recipe& r) {
  return r.format == OutputFormat::gguf || r.format == OutputFormat::compressed_tensors;
}

// Most keys apply exactly when recipe_to_yaml writes them (their `written`
// tests the method or format). These are written only when not at their
// default, so where they apply is said here (Recipe::validate judges the
// combinations of scaling, smoothquant and refit with the method).
bool applies(const RecipeKey& key, const Recipe& r) {
  using Where = bool (*)(const Recipe&);
  static constexpr std::pair<std::string_view, Where> kApplies[] = {
      {"smoothquant.alpha", always},
      {"scaling", always},
      {"refit", always},
      {"target", gptq},
      {"code_sweeps", gptq},
      {"experts.calibration", [](const Recipe& r) { return r.needs_statistics(); }},
      {"experts.min_tokens", [](const Recipe& r) { return r.needs_statistics(); }},
      {"format", always},
      {"gguf_refit", [](const Recipe& r) { return gguf_format(r) && gptq(r); }},
      {"mix.max_bytes", mix_format},
      {"mix.bpw", mix_format},
      {"mix.costs", mix_format},
      {"mix.types", mix_format},
      {"imatrix", gguf_format},
  };
  for (const auto& [path, where] : kApplies)
    if (path == key.path) return where(r);
  return key.written(r);
}

}  // namespace

void check_given_keys_apply(const Recipe& r) {
  for (const auto& [path, where] : r.given_keys) {
    const RecipeKey* key = find_key(path);
    if (key == nullptr || applies(*key, r)) continue;
    throw input_error(where,
                      "a key this recipe uses (method " + std::string(method_name(r.method)) +
                          ", format " + std::string(output_format_info(r.format).name) + ")",
                      "\"" + std::string(path) + "\", which it would ignore");
  }
}

Recipe load_recipe(const std::filesystem::path& path) {
  return recipe_from_node(load_yaml_file(path), path.string());
}

Recipe recipe_from_yaml(const std::string& text, const std::string& where) {
  return recipe_from_node(parse_yaml(text, where), where);
}

// Top-level keys one per line; calibration as a block mapping (with its
// sources); the other sections as one-line flow mappings.
std::string recipe_to_yaml(const Recipe& r) {
  std::ostringstream out;
  const auto& keys = recipe_keys();
  for (std::size_t i = 0; i < keys.size();) {
    const std::string_view section = section_of(keys[i].path);
    if (section.empty()) {
      if (keys[i].written(r)) out << keys[i].path << ": " << keys[i].text(r) << "\n";
      ++i;
      continue;
    }
    std::vector<std::string> items;
    for (; i < keys.size() && section_of(keys[i].path) == section; ++i)
      if (keys[i].written(r))
        items.push_back(std::string(keys[i].path.substr(section.size() + 1)) + ": " +
                        keys[i].text(r));
    if (section == "calibration") {
      out << section << ":\n";
      for (const auto& item : items) out << "  " << item << "\n";
      write_sources(out, r);
    } else if (!items.empty()) {
      out << section << ": {";
      for (std::size_t k = 0; k < items.size(); ++k) out << (k ? ", " : "") << items[k];
      out << "}\n";
    }
  }
  return out.str();
}

}  // namespace ptq
