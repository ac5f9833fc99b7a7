#include "pipeline/formats/ct_pack.hpp"

#include <cmath>
#include <regex>

#include "algorithms/int8.hpp"
#include "io/dtype.hpp"
#include "io/error.hpp"
#include "pipeline/formats/bit_stream.hpp"
#include "pipeline/formats/packed_checkpoint.hpp"

namespace ptq {

namespace {

using bit_stream::kWordBits;
constexpr char kVersion[] =
    "0.20.1";  // the compressed-tensors release this layout is checked against

bool packable_bits(int bits) { return bits == 4 || bits == 8; }

}  // namespace

void require_compressed_packable(const QuantizedMatrix& m, const std::string& where) {
  if (!packable_bits(m.spec.bits))
    throw input_error(where, "4 or 8 bits (pack-quantized)", std::to_string(m.spec.bits) + " bits");
  if (m.spec.granularity == Granularity::Tensor)
    throw input_error(where, "a grid per channel or group", "tensor granularity");
  require_whole_words(m, where);
  require_natural_groups(m, where);
  require_half_scales(m, where);
  require_integer_zeros(m, where);
  // A symmetric grid stores no zero points: each must be the centre 2^(bits-1).
  const float centre = static_cast<float>(1 << (m.spec.bits - 1));
  if (m.spec.symmetry == Symmetry::Symmetric && (m.zeros.array() != centre).any())
    throw input_error(
        where, "zero points of " + std::to_string(1 << (m.spec.bits - 1)) + " on a symmetric grid",
        "another zero point");
}

CompressedLinear pack_compressed(const QuantizedMatrix& m, const std::string& where) {
  require_compressed_packable(m, where);
  CompressedLinear t;
  t.bits = m.spec.bits;
  t.symmetric = m.spec.symmetry == Symmetry::Symmetric;
  t.in = m.columns();
  t.out = m.rows();
  t.groups = m.scales.cols();
  const std::int64_t row_words = bit_stream::words_for(t.in, t.bits);
  t.weight_packed.assign(static_cast<std::size_t>(t.out * row_words), 0);
  t.weight_scale.resize(static_cast<std::size_t>(t.out * t.groups));
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      bit_stream::put(t.weight_packed.data() + o * row_words, 1, i, t.bits, m.codes(o, i));
    for (std::int64_t g = 0; g < t.groups; ++g)
      t.weight_scale[static_cast<std::size_t>(o * t.groups + g)] = float_to_half(m.scales(o, g));
  }
  if (!t.symmetric) {
    t.weight_zero_point.assign(
        static_cast<std::size_t>(bit_stream::words_for(t.out, t.bits) * t.groups), 0);
    for (std::int64_t g = 0; g < t.groups; ++g)
      for (std::int64_t o = 0; o < t.out; ++o)
        bit_stream::put(t.weight_zero_point.data() + g, t.groups, o, t.bits,
                        static_cast<std::uint32_t>(m.zeros(o, g)));
  }
  return t;
}

QuantizedMatrix unpack_compressed(const CompressedLinear& t, const QuantSpec& spec,
                                  const std::string& where) {
  if (!packable_bits(t.bits) || spec.bits != t.bits)
    throw input_error(where + " bits", "4 or 8, as quantization_config says",
                      std::to_string(t.bits));
  if (t.out <= 0) throw input_error(where, "a positive number of outputs", std::to_string(t.out));
  require_groups(spec, t.in, t.groups, where);
  const std::int64_t row_words = bit_stream::words_for(t.in, t.bits);
  require_size(where, "weight_packed", t.weight_packed.size(), t.out * row_words);
  require_size(where, "weight_scale", t.weight_scale.size(), t.out * t.groups);
  if (!t.symmetric)
    require_size(where, "weight_zero_point", t.weight_zero_point.size(),
                 bit_stream::words_for(t.out, t.bits) * t.groups);
  QuantizedMatrix m{spec, CodeMatrix(t.out, t.in), MatrixRM(t.out, t.groups),
                    MatrixRM(t.out, t.groups),
                    std::vector<std::int32_t>(static_cast<std::size_t>(t.in))};
  const std::int64_t width = spec.granularity == Granularity::Group ? spec.group_size : t.in;
  for (std::int64_t i = 0; i < t.in; ++i)
    m.g_idx[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i / width);
  const float centre = static_cast<float>(1 << (t.bits - 1));
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      m.codes(o, i) = static_cast<std::uint8_t>(
          bit_stream::get(t.weight_packed.data() + o * row_words, 1, i, t.bits));
    for (std::int64_t g = 0; g < t.groups; ++g) {
      m.scales(o, g) = half_to_float(t.weight_scale[static_cast<std::size_t>(o * t.groups + g)]);
      m.zeros(o, g) = t.symmetric ? centre
                                  : static_cast<float>(bit_stream::get(
                                        t.weight_zero_point.data() + g, t.groups, o, t.bits));
    }
  }
  return m;
}

Int8Linear pack_int8(const QuantizedMatrix& m, const std::string& where) {
  if (m.spec.bits != 8 || m.spec.symmetry != Symmetry::Symmetric ||
      m.spec.granularity != Granularity::Channel || (m.zeros.array() != kInt8Zero).any())
    throw input_error(where, "an 8-bit symmetric grid per channel with zero 128 (W8A8)",
                      std::to_string(m.spec.bits) + " bits, another grid");
  Int8Linear t{m.rows(), m.columns(), {}, {}};
  t.weight.resize(static_cast<std::size_t>(t.out * t.in));
  t.weight_scale.resize(static_cast<std::size_t>(t.out));
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      t.weight[static_cast<std::size_t>(o * t.in + i)] =
          static_cast<std::int8_t>(static_cast<int>(m.codes(o, i)) - 128);
    t.weight_scale[static_cast<std::size_t>(o)] = m.scales(o, 0);
  }
  return t;
}

QuantizedMatrix unpack_int8(const Int8Linear& t, const std::string& where) {
  if (t.out <= 0 || t.in <= 0)
    throw input_error(where + ".weight", "[out, in], both positive",
                      std::to_string(t.out) + " x " + std::to_string(t.in));
  require_size(where, "weight", t.weight.size(), t.out * t.in);
  require_size(where, "weight_scale", t.weight_scale.size(), t.out);
  QuantSpec spec;
  spec.bits = 8;
  spec.symmetry = Symmetry::Symmetric;
  spec.granularity = Granularity::Channel;
  QuantizedMatrix m{spec, CodeMatrix(t.out, t.in), MatrixRM(t.out, 1),
                    MatrixRM::Constant(t.out, 1, kInt8Zero),
                    std::vector<std::int32_t>(static_cast<std::size_t>(t.in), 0)};
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      m.codes(o, i) =
          static_cast<std::uint8_t>(t.weight[static_cast<std::size_t>(o * t.in + i)] + 128);
    m.scales(o, 0) = t.weight_scale[static_cast<std::size_t>(o)];
  }
  return m;
}

namespace {

nlohmann::ordered_json int_args(int bits, bool symmetric, const char* strategy,
                                std::optional<int> group_size, bool dynamic, bool act_order) {
  return {
      {"num_bits", bits},
      {"type", "int"},
      {"symmetric", symmetric},
      {"group_size", group_size ? nlohmann::ordered_json(*group_size) : nullptr},
      {"strategy", strategy},
      {"block_structure", nullptr},
      {"dynamic", dynamic},
      {"actorder", act_order ? nlohmann::ordered_json("weight") : nullptr},
      {"observer", dynamic ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json("minmax")},
      {"observer_kwargs", nlohmann::ordered_json::object()}};
}

nlohmann::ordered_json group_of(const char* format, const nlohmann::ordered_json& targets,
                                 const nlohmann::ordered_json& weights,
                                 const nlohmann::ordered_json& inputs) {
  return {{"targets", targets},
          {"weights", weights},
          {"input_activations", inputs},
          {"output_activations", nullptr},
          {"format", format}};
}

nlohmann::ordered_json config_of(const char* format, nlohmann::ordered_json groups) {
  return {{"quant_method", "compressed-tensors"},
          {"format", format},
          {"quantization_status", "compressed"},
          {"config_groups", std::move(groups)},
          {"ignore", {"lm_head"}},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"version", kVersion}};
}

nlohmann::ordered_json config_of(const char* format, const nlohmann::ordered_json& weights,
                                 const nlohmann::ordered_json& inputs) {
  return config_of(format, {{"group_0", group_of(format, {"Linear"}, weights, inputs)}});
}

nlohmann::ordered_json weight_args(const QuantSpec& spec, bool act_order) {
  const bool group = spec.granularity == Granularity::Group;
  return int_args(spec.bits, spec.symmetry == Symmetry::Symmetric, group ? "group" : "channel",
                  group ? std::optional<int>(spec.group_size) : std::nullopt, false, act_order);
}

}  // namespace

nlohmann::ordered_json compressed_tensors_config(const QuantSpec& spec, bool act_order) {
  return config_of("pack-quantized", weight_args(spec, act_order), nullptr);
}

nlohmann::ordered_json compressed_tensors_config(std::span<const CompressedTensorsTargets> groups,
                                                 bool act_order) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < groups.size(); ++i)
    out["group_" + std::to_string(i)] =
        group_of("pack-quantized", groups[i].modules, weight_args(groups[i].spec, act_order), nullptr);
  return config_of("pack-quantized", std::move(out));
}

std::uint64_t compressed_linear_bytes(const QuantSpec& spec, std::int64_t in, std::int64_t out) {
  const std::int64_t groups =
      spec.granularity == Granularity::Group ? (in + spec.group_size - 1) / spec.group_size : 1;
  std::int64_t bytes = out * bit_stream::words_for(in, spec.bits) * 4 + out * groups * 2 + 2 * 8;
  if (spec.symmetry != Symmetry::Symmetric) bytes += bit_stream::words_for(out, spec.bits) * groups * 4;
  return static_cast<std::uint64_t>(bytes);
}

nlohmann::ordered_json compressed_tensors_w8a8_config(CtActivations activations) {
  PTQ_ASSERT(activations != CtActivations::none);
  const bool token = activations == CtActivations::token;
  return config_of("int-quantized", int_args(8, true, "channel", std::nullopt, false, false),
                   int_args(8, true, token ? "token" : "tensor", std::nullopt, token, false));
}

namespace {

// The weights' grid of a config group (InputError naming `w` otherwise).
QuantSpec weight_spec(const nlohmann::json& q, const std::string& w) {
  QuantSpec spec;
  spec.bits = q.value("num_bits", 0);
  if (!packable_bits(spec.bits) || q.value("type", "") != "int")
    throw input_error(w + " weights", "int weights of 4 or 8 bits", q.dump());
  spec.symmetry = q.value("symmetric", true) ? Symmetry::Symmetric : Symmetry::Asymmetric;
  const std::string strategy = q.value("strategy", "");
  if (strategy == "group" && q.contains("group_size") && q["group_size"].is_number_integer() &&
      q["group_size"].get<int>() > 0) {
    spec.granularity = Granularity::Group;
    spec.group_size = q["group_size"].get<int>();
  } else if (strategy == "channel") {
    spec.granularity = Granularity::Channel;
  } else {
    throw input_error(w + " weights.strategy", "group (with a group_size) or channel", q.dump());
  }
  if (q.contains("actorder") && !q["actorder"].is_null() && q["actorder"] != "weight")
    throw input_error(w + " weights.actorder", "null or \"weight\" (natural groups, no g_idx)",
                      q["actorder"].dump());
  return spec;
}

// int-quantized W8A8: 8-bit symmetric channel weights, 8-bit symmetric inputs
// per token (dynamic) or per tensor (static).
CtActivations w8a8_activations(const QuantSpec& spec, const nlohmann::json& group,
                               const std::string& w) {
  if (spec.bits != 8 || spec.symmetry != Symmetry::Symmetric ||
      spec.granularity != Granularity::Channel)
    throw input_error(w + " weights", "8-bit symmetric per channel (int-quantized W8A8)",
                      group.value("weights", nlohmann::json()).dump());
  const nlohmann::json a = group.value("input_activations", nlohmann::json());
  if (!a.is_object())
    throw input_error(w + " input_activations", "int8 inputs (int-quantized W8A8)", a.dump());
  const std::string strategy = a.value("strategy", "");
  const bool dynamic = a.value("dynamic", false);
  if (a.value("num_bits", 0) == 8 && a.value("type", "") == "int" && a.value("symmetric", false)) {
    if (strategy == "token" && dynamic) return CtActivations::token;
    if (strategy == "tensor" && !dynamic) return CtActivations::tensor;
  }
  throw input_error(w + " input_activations",
                    "8-bit symmetric int, per token (dynamic) or per tensor (static)", a.dump());
}

}  // namespace

namespace {

// One config group's scheme in `format` (pack-quantized or int-quantized).
CompressedTensorsScheme group_scheme(const nlohmann::json& group, const std::string& format,
                                     const std::string& w) {
  CompressedTensorsScheme scheme;
  scheme.spec = weight_spec(group.value("weights", nlohmann::json::object()), w);
  scheme.spec.scale_storage = ScaleStorage::f16;
  scheme.int_quantized = format == "int-quantized";
  const nlohmann::json inputs = group.value("input_activations", nlohmann::json());
  if (!scheme.int_quantized) {
    if (!inputs.is_null())
      throw input_error(w, "weight-only quantization (pack-quantized)",
                        "input_activations " + inputs.dump());
    return scheme;
  }
  scheme.spec.scale_storage = ScaleStorage::f32;
  scheme.activations = w8a8_activations(scheme.spec, group, w);
  return scheme;
}

// A list of module targets; each "re:" one must be a regular expression.
std::vector<std::string> target_list(const nlohmann::json& j, const std::string& w) {
  if (j.is_null()) return {};
  if (!j.is_array()) throw input_error(w, "a list of names", j.dump());
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) throw input_error(w, "a list of names", j.dump());
    out.push_back(v.get<std::string>());
    if (!out.back().starts_with("re:")) continue;
    try {
      std::regex(out.back().substr(3));
    } catch (const std::regex_error&) {
      throw input_error(w, "regular expressions after re:", "\"" + out.back() + "\"");
    }
  }
  return out;
}

bool targets(const std::string& target, const std::string& module) {
  if (target == "Linear" || target == module) return true;
  if (!target.starts_with("re:")) return false;
  return std::regex_search(module, std::regex(target.substr(3)),
                           std::regex_constants::match_continuous);
}

}  // namespace

const CompressedTensorsScheme* CompressedTensorsConfig::scheme_for(
    const std::string& module) const {
  for (const auto& t : ignore)
    if (targets(t, module) && t != "Linear") return nullptr;
  for (const auto& g : groups)
    for (const auto& t : g.targets)
      if (targets(t, module)) return &g.scheme;
  return nullptr;
}

CtActivations CompressedTensorsConfig::activations(const std::string& where) const {
  for (const auto& g : groups)
    if (g.scheme.activations != groups.front().scheme.activations)
      throw input_error(where + " config_groups", "one input_activations scheme for every group",
                        "groups " + groups.front().name + " and " + g.name + " differ");
  return groups.empty() ? CtActivations::none : groups.front().scheme.activations;
}

std::optional<CompressedTensorsConfig> read_compressed_tensors_config(const nlohmann::json& config,
                                                                      const std::string& where) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || !it->is_object() ||
      it->value("quant_method", "") != "compressed-tensors")
    return std::nullopt;
  const std::string w = where + ": quantization_config";
  const std::string format = it->value("format", "missing");
  const auto known = [](const std::string& f) {
    return f == "pack-quantized" || f == "int-quantized";
  };
  if (!known(format) && format != "mixed-precision")
    throw input_error(w + ".format", "pack-quantized, int-quantized or mixed-precision", format);
  const auto groups = it->find("config_groups");
  if (groups == it->end() || !groups->is_object() || groups->empty())
    throw input_error(w + ".config_groups", "one group or more",
                      groups == it->end() ? "none" : groups->dump());
  CompressedTensorsConfig out;
  out.ignore = target_list(it->value("ignore", nlohmann::json()), w + ".ignore");
  for (const auto& [name, group] : groups->items()) {
    const std::string gw = w + ".config_groups." + name;
    const std::string f = group.value("format", format);
    if (!known(f)) throw input_error(gw + ".format", "pack-quantized or int-quantized", f);
    out.groups.push_back({name,
                          target_list(group.value("targets", nlohmann::json()), gw + ".targets"),
                          group_scheme(group, f, gw)});
  }
  return out;
}

namespace {

QuantizedMatrix pack_quantized_linear(const Checkpoint& packed, const std::string& base,
                                      const QuantSpec& spec, const std::string& where) {
  const auto shape = packed_values<std::int64_t>(packed, base + ".weight_shape", DType::I64);
  if (shape.size() != 2)
    throw input_error(where + ".weight_shape", "[out, in]",
                      std::to_string(shape.size()) + " values");
  CompressedLinear l;
  l.bits = spec.bits;
  l.symmetric = spec.symmetry == Symmetry::Symmetric;
  l.out = shape[0];
  l.in = shape[1];
  l.weight_packed = packed_values<std::int32_t>(packed, base + ".weight_packed", DType::I32);
  l.weight_scale = packed_values<std::uint16_t>(packed, base + ".weight_scale", DType::F16);
  if (!l.symmetric)
    l.weight_zero_point =
        packed_values<std::int32_t>(packed, base + ".weight_zero_point", DType::I32);
  l.groups = l.out > 0 ? static_cast<std::int64_t>(l.weight_scale.size()) / l.out : 0;
  return unpack_compressed(l, spec, where);
}

QuantizedMatrix int_quantized_linear(const Checkpoint& packed, const std::string& base,
                                     const std::string& where) {
  const TensorView& w = packed.require(base + ".weight");
  if (w.shape.size() != 2)
    throw input_error(where + ".weight", "int8 [out, in]",
                      std::to_string(w.shape.size()) + " dims");
  Int8Linear t{w.shape[0], w.shape[1],
               packed_values<std::int8_t>(packed, base + ".weight", DType::I8),
               packed_values<float>(packed, base + ".weight_scale", DType::F32)};
  return unpack_int8(t, where);
}

}  // namespace

QuantizedMatrix read_compressed_linear(const Checkpoint& packed, const std::string& base,
                                       const CompressedTensorsScheme& scheme,
                                       const std::string& where) {
  return scheme.int_quantized ? int_quantized_linear(packed, base, where)
                              : pack_quantized_linear(packed, base, scheme.spec, where);
}

Checkpoint dequantized_compressed_checkpoint(const std::filesystem::path& dir,
                                             const Checkpoint& packed,
                                             const CompressedTensorsConfig& config) {
  // Both formats give every quantized Linear a weight_scale.
  constexpr std::string_view kParts[] = {".weight",       ".weight_packed",
                                         ".weight_scale", ".weight_zero_point",
                                         ".weight_shape", ".input_scale"};
  return with_linears_dequantized(
      dir, packed, ".weight_scale", kParts, [&](const std::string& base) {
        const std::string where = dir.string() + ": " + base;
        const CompressedTensorsScheme* scheme = config.scheme_for(base);
        if (scheme == nullptr)
          throw input_error(where, "a module some config group targets",
                            "quantized tensors of "
                            "a module no config group names, or an ignored one");
        return read_compressed_linear(packed, base, *scheme, where).dequantize();
      });
}

}  // namespace ptq
