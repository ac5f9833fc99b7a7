#include "pipeline/formats/gptq_pack.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <bit>
#include <cmath>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "pipeline/formats/bit_stream.hpp"
#include "pipeline/formats/packed_checkpoint.hpp"

namespace ptq {

namespace {

using bit_stream::kWordBits;

bool gptq_bits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

}  // namespace

std::string gptq_checkpoint_format(GptqZeros zeros) {
  return zeros == GptqZeros::v1 ? "gptq" : "gptq_v2";
}

GptqZeros gptq_zeros_needed(const QuantizedMatrix& m) {
  return m.zeros.size() > 0 && m.zeros.minCoeff() < 1.0f ? GptqZeros::v2 : GptqZeros::v1;
}

void require_gptq_packable(const QuantizedMatrix& m, const std::string& where) {
  if (!gptq_bits(m.spec.bits))
    throw input_error(where, "2, 3, 4 or 8 bits (GPTQ's packings)",
                      std::to_string(m.spec.bits) + " bits");
  if (m.spec.granularity == Granularity::Tensor)
    throw input_error(where, "a grid per channel or group (GPTQ has no per-tensor grid)",
                      "tensor granularity");
  require_whole_words(m, where);
  require_half_scales(m, where);
  require_integer_zeros(m, where);
}

GptqLinear pack_gptq(const QuantizedMatrix& m, GptqZeros zeros, const std::string& where) {
  require_gptq_packable(m, where);
  if (zeros == GptqZeros::v1 && gptq_zeros_needed(m) == GptqZeros::v2)
    throw input_error(where, "zero points >= 1 (v1 stores zero - 1)", "a zero point of 0");
  GptqLinear t;
  t.bits = m.spec.bits;
  t.in = m.columns();
  t.out = m.rows();
  t.groups = m.scales.cols();
  const std::int64_t weight_words = t.in * t.bits / kWordBits,
                     zero_words = t.out * t.bits / kWordBits;
  t.qweight.assign(static_cast<std::size_t>(weight_words * t.out), 0);
  t.qzeros.assign(static_cast<std::size_t>(t.groups * zero_words), 0);
  t.scales.resize(static_cast<std::size_t>(t.groups * t.out));
  const std::uint32_t stored_offset = zeros == GptqZeros::v1 ? 1 : 0;
  // Runs of kWordBits outputs own whole words of qweight's columns and of
  // qzeros' rows, so they are packed in parallel (the same bytes).
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, t.out / kWordBits), [&](const auto& r) {
    for (std::int64_t o = r.begin() * kWordBits; o < r.end() * kWordBits; ++o) {
      for (std::int64_t i = 0; i < t.in; ++i)
        bit_stream::put(t.qweight.data() + o, t.out, i, t.bits, m.codes(o, i));
      for (std::int64_t g = 0; g < t.groups; ++g) {
        const auto zero = static_cast<std::uint32_t>(m.zeros(o, g)) - stored_offset;
        bit_stream::put(t.qzeros.data() + g * zero_words, 1, o, t.bits, zero);
        t.scales[static_cast<std::size_t>(g * t.out + o)] = float_to_half(m.scales(o, g));
      }
    }
  });
  t.g_idx = m.g_idx;
  return t;
}

QuantizedMatrix unpack_gptq(const GptqLinear& t, GptqZeros zeros, const QuantSpec& spec,
                            const std::string& where) {
  if (!gptq_bits(t.bits) || spec.bits != t.bits)
    throw input_error(where + " bits", "2, 3, 4 or 8, as quantization_config says",
                      std::to_string(t.bits));
  if (t.in <= 0 || t.out <= 0 || t.in % kWordBits != 0 || t.out % kWordBits != 0)
    throw input_error(where, "in and out features that are multiples of 32",
                      "[" + std::to_string(t.out) + ", " + std::to_string(t.in) + "]");
  require_groups(spec, t.in, t.groups, where);
  const std::int64_t weight_words = t.in * t.bits / kWordBits,
                     zero_words = t.out * t.bits / kWordBits;
  require_size(where, "qweight", t.qweight.size(), weight_words * t.out);
  require_size(where, "qzeros", t.qzeros.size(), t.groups * zero_words);
  require_size(where, "scales", t.scales.size(), t.groups * t.out);
  require_size(where, "g_idx", t.g_idx.size(), t.in);
  for (std::int32_t g : t.g_idx)
    if (g < 0 || g >= t.groups)
      throw input_error(where + " g_idx", "groups in [0, " + std::to_string(t.groups) + ")",
                        std::to_string(g));
  QuantizedMatrix m{spec, CodeMatrix(t.out, t.in), MatrixRM(t.out, t.groups),
                    MatrixRM(t.out, t.groups), t.g_idx};
  const float stored_offset = zeros == GptqZeros::v1 ? 1.0f : 0.0f;
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      m.codes(o, i) =
          static_cast<std::uint8_t>(bit_stream::get(t.qweight.data() + o, t.out, i, t.bits));
    for (std::int64_t g = 0; g < t.groups; ++g) {
      m.zeros(o, g) =
          static_cast<float>(bit_stream::get(t.qzeros.data() + g * zero_words, 1, o, t.bits)) +
          stored_offset;
      m.scales(o, g) = half_to_float(t.scales[static_cast<std::size_t>(g * t.out + o)]);
    }
  }
  return m;
}

nlohmann::ordered_json gptq_quantization_config(const GptqCheckpointGrid& grid, bool static_groups,
                                                double damp_percent) {
  const QuantSpec& s = grid.spec;
  return {{"quant_method", "gptq"},
          {"bits", s.bits},
          {"group_size", s.granularity == Granularity::Group ? s.group_size : -1},
          {"desc_act", grid.desc_act},
          {"sym", s.symmetry == Symmetry::Symmetric},
          {"static_groups", static_groups},
          {"true_sequential", true},
          {"damp_percent", damp_percent},
          {"checkpoint_format", gptq_checkpoint_format(grid.zeros)},
          {"lm_head", false}};
}

std::optional<GptqCheckpointGrid> read_gptq_quantization_config(const nlohmann::json& config,
                                                                const std::string& where) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || !it->is_object() || it->value("quant_method", "") != "gptq")
    return std::nullopt;
  const nlohmann::json& q = *it;
  const std::string w = where + ": quantization_config";
  GptqCheckpointGrid grid;
  const auto number = [&](const char* key) {
    if (!q.contains(key) || !q[key].is_number_integer())
      throw input_error(w + "." + key, "an integer", q.contains(key) ? q[key].dump() : "missing");
    return q[key].get<int>();
  };
  grid.spec.bits = number("bits");
  if (!gptq_bits(grid.spec.bits))
    throw input_error(w + ".bits", "2, 3, 4 or 8", std::to_string(grid.spec.bits));
  const int group = number("group_size");
  if (group == -1) {
    grid.spec.granularity = Granularity::Channel;
  } else if (group > 0) {
    grid.spec.granularity = Granularity::Group;
    grid.spec.group_size = group;
  } else {
    throw input_error(w + ".group_size", "-1 (per channel) or a positive group size",
                      std::to_string(group));
  }
  grid.spec.symmetry = q.value("sym", true) ? Symmetry::Symmetric : Symmetry::Asymmetric;
  grid.spec.scale_storage = ScaleStorage::f16;
  grid.desc_act = q.value("desc_act", false);
  const std::string format = q.value("checkpoint_format", "gptq");
  if (format != "gptq" && format != "gptq_v2")
    throw input_error(w + ".checkpoint_format", "gptq or gptq_v2", format);
  grid.zeros = format == "gptq" ? GptqZeros::v1 : GptqZeros::v2;
  return grid;
}

QuantizedMatrix read_gptq_linear(const Checkpoint& packed, const std::string& base,
                                 const GptqCheckpointGrid& grid, const std::string& where) {
  const TensorView& q = packed.require(base + ".qweight");
  // Not empty: an empty tensor's other dimension is unbounded, and multiplied below.
  if (q.shape.size() != 2 || q.numel() == 0 || (q.shape[0] * kWordBits) % grid.spec.bits != 0)
    throw input_error(
        where + ".qweight", "int32 [in * bits / 32, out], not empty",
        std::to_string(q.shape.size()) + "-D, " + std::to_string(q.numel()) + " values");
  GptqLinear l;
  l.bits = grid.spec.bits;
  l.out = q.shape[1];
  l.in = q.shape[0] * kWordBits / l.bits;
  l.qweight = packed_values<std::int32_t>(packed, base + ".qweight", DType::I32);
  l.qzeros = packed_values<std::int32_t>(packed, base + ".qzeros", DType::I32);
  l.scales = packed_values<std::uint16_t>(packed, base + ".scales", DType::F16);
  l.g_idx = packed_values<std::int32_t>(packed, base + ".g_idx", DType::I32);
  l.groups = l.out > 0 ? static_cast<std::int64_t>(l.scales.size()) / l.out : 0;
  return unpack_gptq(l, grid.zeros, grid.spec, where);
}

Checkpoint dequantized_gptq_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed,
                                       const GptqCheckpointGrid& grid) {
  constexpr std::string_view kParts[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
  return with_linears_dequantized(dir, packed, ".qweight", kParts, [&](const std::string& base) {
    return read_gptq_linear(packed, base, grid, dir.string() + ": " + base).dequantize();
  });
}

}  // namespace ptq
