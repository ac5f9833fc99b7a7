#include "pipeline/recipe.hpp"

#include <yaml-cpp/yaml.h>

#include <set>
#include <utility>
#include <sstream>

#include "io/error.hpp"

namespace ptq {

namespace {

// Every enum a recipe names is a table of {text, value}, read and written
// through the three helpers below.
template <class E, std::size_t N>
using NameTable = std::pair<const char*, E>[N];

template <class E, std::size_t N>
std::string name_list(const NameTable<E, N>& names, const char* separator) {
  std::string list;
  for (const auto& [text, value] : names) list += (list.empty() ? "" : separator) + std::string(text);
  return list;
}

// The value named `text`; InputError naming `where` and what was `expected` otherwise.
template <class E, std::size_t N>
E named(const std::string& text, const std::string& where, const std::string& expected,
        const NameTable<E, N>& names) {
  for (const auto& [name, value] : names)
    if (text == name) return value;
  throw input_error(where, expected, "\"" + text + "\"");
}

template <class E, std::size_t N>
const char* choice_name(E value, const NameTable<E, N>& names) {
  for (const auto& [text, v] : names)
    if (v == value) return text;
  return "?";
}

constexpr std::pair<const char*, Method> kMethods[] = {
    {"rtn", Method::Rtn}, {"gptq", Method::Gptq}, {"awq", Method::Awq}, {"w8a8", Method::W8A8}, {"nf4", Method::Nf4}};
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

bool Recipe::needs_calibration() const {
  switch (method) {
    case Method::Rtn: return refit != ScaleRefit::None || scaling != Scaling::None;
    case Method::Nf4: return false;
    case Method::Gptq:
    case Method::Awq: return true;
    case Method::W8A8: return smoothquant.has_value() || act_granularity == ActGranularity::Tensor;
  }
  return true;
}

QuantSpec Recipe::quant_spec() const {
  QuantSpec s = spec;
  if (method == Method::Awq) s.range = RangeRule::MinMax;
  return s;
}

AwqOptions Recipe::awq_options(int batch_windows) const {
  AwqOptions o;
  o.spec = spec;
  o.spec.range = RangeRule::MinMax;
  o.clip_mode = awq_clip;
  o.search_windows = awq_search_windows;
  o.batch_windows = batch_windows;
  return o;
}

GptqConfig Recipe::gptq_config() const {
  GptqConfig c;
  c.spec = spec;
  c.damp = damp;
  c.block_size = block_size;
  c.order = order;
  c.group_grids = group_grids;
  c.clip = clip;
  return c;
}

void Recipe::apply_implied_defaults() {
  if (scaling == Scaling::SmoothQuant && !smoothquant) smoothquant = SmoothQuantConfig{};
}

void Recipe::validate() const {
  spec.validate();
  calibration.validate();
  require_clip_applies(clip, spec, "recipe: clip");
  if (method == Method::Gptq) gptq_config().validate();
  if (uses_awq()) awq_options(1).validate();
  // Method awq advances the calibration stream through the float block, so no
  // statistics of the quantized block's inputs exist for a refit.
  if (method == Method::Awq && refit != ScaleRefit::None)
    throw input_error("refit", "none with method awq (it searches on the float stream)", "least_squares");
  if (method == Method::Awq) quant_spec().validate();
  if (smoothquant) smoothquant->validate();
  if (scaling != Scaling::None && method != Method::Rtn && method != Method::Gptq)
    throw input_error("scaling", "none with method " + std::string(method_name(method)),
                      std::string(scaling_name(scaling)));
  if (scaling == Scaling::SmoothQuant && !smoothquant)
    throw input_error("scaling", "smoothquant.alpha with scaling smoothquant", "no smoothquant key");
  if (smoothquant && method != Method::W8A8 && scaling != Scaling::SmoothQuant)
    throw input_error("smoothquant", "method w8a8 or scaling smoothquant",
                      "method " + std::string(method_name(method)) + " with scaling " + std::string(scaling_name(scaling)));
  if (!(act_percentile > 0.0 && act_percentile <= 100.0))
    throw input_error("activations.percentile", "a number in (0, 100]", std::to_string(act_percentile));
  nf4.validate();
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
    case Granularity::Channel: return "channel";
    case Granularity::Tensor: return "tensor";
    case Granularity::Group: return std::to_string(spec.group_size);
  }
  return "?";
}

namespace {

const std::set<std::string> kTopKeys = {"method",     "bits",        "group",       "symmetric",  "act_order",
                                         "static_groups", "damp",    "block_size", "calibration", "scaling",
                                         "awq_clip", "awq_search_windows", "clip", "refit", "smoothquant",
                                         "activations", "block"};
const std::set<std::string> kClipKeys = {"method", "steps", "max_shrink", "norm", "weighting", "percentile"};
const std::set<std::string> kSmoothKeys = {"alpha"};
const std::set<std::string> kActivationKeys = {"granularity", "percentile"};
const std::set<std::string> kCalibKeys = {"samples", "seqlen", "seed", "sources"};

template <class T>
T scalar(const YAML::Node& node, const std::string& where, const char* expected) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw input_error(where, expected, "\"" + YAML::Dump(node) + "\"");
  }
}

void check_keys(const YAML::Node& map, const std::set<std::string>& known, const std::string& where) {
  for (const auto& kv : map) {
    const auto key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw input_error(where + ": key \"" + key + "\"", "one of " + list, "an unknown key");
    }
  }
}

void read_calibration(const YAML::Node& node, Recipe& r, const std::string& where) {
  if (!node.IsMap()) throw input_error(where, "a mapping", "another YAML type");
  check_keys(node, kCalibKeys, where);
  if (node["samples"]) r.calibration.samples = scalar<int>(node["samples"], where + ".samples", "an integer");
  if (node["seqlen"]) r.calibration.seqlen = scalar<int>(node["seqlen"], where + ".seqlen", "an integer");
  if (node["seed"]) r.calibration.seed = scalar<std::uint64_t>(node["seed"], where + ".seed", "an integer >= 0");
  if (!node["sources"]) return;
  for (const auto& s : node["sources"]) {
    CalibSourceSpec spec;
    spec.name = scalar<std::string>(s["name"], where + ".sources.name", "a string");
    spec.path = scalar<std::string>(s["path"], where + ".sources.path", "a string");
    if (s["weight"]) spec.weight = scalar<double>(s["weight"], where + ".sources.weight", "a number");
    r.sources.push_back(spec);
  }
}

// One of `names`; InputError listing them otherwise.
template <class E, std::size_t N>
E choice(const YAML::Node& node, const std::string& where, const NameTable<E, N>& names) {
  const std::string list = name_list(names, " | ");
  return named(scalar<std::string>(node, where, list.c_str()), where, list, names);
}

constexpr std::pair<const char*, ClipMethod> kClipMethods[] = {
    {"none", ClipMethod::None}, {"mse", ClipMethod::Mse}, {"percentile", ClipMethod::Percentile}};
constexpr std::pair<const char*, ClipWeighting> kClipWeightings[] = {
    {"uniform", ClipWeighting::Uniform}, {"hessian", ClipWeighting::Hessian}};
constexpr std::pair<const char*, ScaleRefit> kRefits[] = {
    {"none", ScaleRefit::None}, {"least_squares", ScaleRefit::LeastSquares}};

void read_clip(const YAML::Node& node, ClipConfig& c, const std::string& where) {
  if (!node.IsMap()) throw input_error(where, "a mapping", "another YAML type");
  check_keys(node, kClipKeys, where);
  if (node["method"]) c.method = choice(node["method"], where + ".method", kClipMethods);
  if (node["steps"]) c.steps = scalar<int>(node["steps"], where + ".steps", "an integer");
  if (node["max_shrink"]) c.max_shrink = scalar<double>(node["max_shrink"], where + ".max_shrink", "a number");
  if (node["norm"]) c.norm = scalar<double>(node["norm"], where + ".norm", "a number");
  if (node["weighting"]) c.weighting = choice(node["weighting"], where + ".weighting", kClipWeightings);
  if (node["percentile"]) c.percentile = scalar<double>(node["percentile"], where + ".percentile", "a number");
}

void read_w8a8(const YAML::Node& root, Recipe& r, const std::string& where) {
  if (const auto& n = root["smoothquant"]) {
    if (!n.IsMap()) throw input_error(where + ": smoothquant", "a mapping {alpha: X}", "another YAML type");
    check_keys(n, kSmoothKeys, where + ": smoothquant");
    r.smoothquant = SmoothQuantConfig{};
    if (n["alpha"]) r.smoothquant->alpha = scalar<double>(n["alpha"], where + ": smoothquant.alpha", "a number");
  }
  if (const auto& n = root["activations"]) {
    if (!n.IsMap()) throw input_error(where + ": activations", "a mapping", "another YAML type");
    check_keys(n, kActivationKeys, where + ": activations");
    if (n["granularity"])
      r.act_granularity = parse_act_granularity(
          scalar<std::string>(n["granularity"], where + ": activations.granularity", "token or tensor"),
          where + ": activations.granularity");
    if (n["percentile"])
      r.act_percentile = scalar<double>(n["percentile"], where + ": activations.percentile", "a number");
  }
}

}  // namespace

ActGranularity parse_act_granularity(const std::string& text, const std::string& where) {
  if (text == "token") return ActGranularity::Token;
  if (text == "tensor") return ActGranularity::Tensor;
  throw input_error(where, "token or tensor", "\"" + text + "\"");
}

Recipe load_recipe(const std::filesystem::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    throw input_error(path.string(), "a readable recipe file", "cannot open");
  } catch (const YAML::Exception& e) {
    throw input_error(path.string(), "YAML or JSON", std::string("a parse error: ") + e.what());
  }
  const std::string where = path.string();
  if (!root.IsMap()) throw input_error(where, "a mapping of recipe keys", "another YAML type");
  check_keys(root, kTopKeys, where);
  Recipe r;
  if (root["method"])
    r.method = parse_method(scalar<std::string>(root["method"], where + ": method", "a string"), where + ": method");
  if (root["scaling"])
    r.scaling = choice(root["scaling"], where + ": scaling", kScalings);
  if (root["awq_clip"] && !scalar<bool>(root["awq_clip"], where + ": awq_clip", "true or false"))
    r.awq_clip = AwqClipMode::None;
  if (root["awq_search_windows"])
    r.awq_search_windows = scalar<int>(root["awq_search_windows"], where + ": awq_search_windows", "an integer");
  if (root["bits"]) r.spec.bits = scalar<int>(root["bits"], where + ": bits", "an integer");
  if (root["group"]) set_granularity(r.spec, scalar<std::string>(root["group"], where + ": group", "a string"), where + ": group");
  if (root["symmetric"] && scalar<bool>(root["symmetric"], where + ": symmetric", "true or false"))
    r.spec.symmetry = Symmetry::Symmetric;
  if (root["act_order"] && scalar<bool>(root["act_order"], where + ": act_order", "true or false"))
    r.order = ColumnOrder::ActivationOrder;
  if (root["static_groups"] && scalar<bool>(root["static_groups"], where + ": static_groups", "true or false"))
    r.group_grids = GroupGrids::Static;
  if (root["damp"]) r.damp = scalar<double>(root["damp"], where + ": damp", "a number");
  if (root["block_size"]) r.block_size = scalar<int>(root["block_size"], where + ": block_size", "an integer");
  if (root["clip"]) read_clip(root["clip"], r.clip, where + ": clip");
  if (root["refit"]) r.refit = choice(root["refit"], where + ": refit", kRefits);
  if (root["calibration"]) read_calibration(root["calibration"], r, where + ": calibration");
  read_w8a8(root, r, where);
  r.apply_implied_defaults();
  if (root["block"]) r.nf4.block_size = scalar<int>(root["block"], where + ": block", "an integer");
  r.validate();
  return r;
}

std::string recipe_title(const Recipe& r) {
  std::ostringstream out;
  out << method_name(r.method);
  switch (r.method) {
    case Method::W8A8:
      if (r.smoothquant) out << " SmoothQuant alpha " << r.smoothquant->alpha << ",";
      out << " int8 activations per " << act_granularity_name(r.act_granularity);
      break;
    case Method::Nf4: out << " (block " << r.nf4.block_size << ")"; break;
    case Method::Rtn:
    case Method::Gptq:
    case Method::Awq: out << " W" << r.spec.bits << " (group " << granularity_text(r.spec) << ")"; break;
  }
  return out.str();
}

std::string recipe_to_yaml(const Recipe& r) {
  std::ostringstream out;
  out << "method: " << method_name(r.method) << "\n";
  if (r.smoothquant) out << "smoothquant: {alpha: " << r.smoothquant->alpha << "}\n";
  if (r.method == Method::W8A8) {
    out << "activations: {granularity: " << act_granularity_name(r.act_granularity)
        << ", percentile: " << r.act_percentile << "}\n";
  } else if (r.method == Method::Nf4) {
    out << "block: " << r.nf4.block_size << "\n";
  } else {
    out << "bits: " << r.spec.bits << "\n"
        << "group: " << granularity_text(r.spec) << "\n"
        << "symmetric: " << (r.spec.symmetry == Symmetry::Symmetric ? "true" : "false") << "\n";
  }
  if (r.method == Method::Gptq) {
    out << "act_order: " << (r.order == ColumnOrder::ActivationOrder ? "true" : "false") << "\n"
        << "static_groups: " << (r.group_grids == GroupGrids::Static ? "true" : "false") << "\n"
        << "damp: " << r.damp << "\n"
        << "block_size: " << r.block_size << "\n";
  }
  if (r.scaling != Scaling::None) out << "scaling: " << scaling_name(r.scaling) << "\n";
  if (r.uses_awq())
    out << "awq_clip: " << (r.awq_clip == AwqClipMode::Search ? "true" : "false") << "\n"
        << "awq_search_windows: " << r.awq_search_windows << "\n";
  if (r.clip.method != ClipMethod::None) {
    out << "clip: {method: " << choice_name(r.clip.method, kClipMethods) << ", steps: " << r.clip.steps
        << ", max_shrink: " << r.clip.max_shrink << ", norm: " << r.clip.norm
        << ", weighting: " << choice_name(r.clip.weighting, kClipWeightings)
        << ", percentile: " << r.clip.percentile << "}\n";
  }
  if (r.refit != ScaleRefit::None) out << "refit: " << choice_name(r.refit, kRefits) << "\n";
  out << "calibration:\n"
      << "  samples: " << r.calibration.samples << "\n"
      << "  seqlen: " << r.calibration.seqlen << "\n"
      << "  seed: " << r.calibration.seed << "\n";
  if (!r.sources.empty()) {
    out << "  sources:\n";
    for (const auto& s : r.sources)
      out << "    - {name: " << s.name << ", path: \"" << s.path.string() << "\", weight: " << s.weight << "}\n";
  }
  return out.str();
}

}  // namespace ptq
