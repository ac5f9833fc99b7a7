#include "pipeline/formats/awq_pack.hpp"

#include <array>
#include <cmath>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "pipeline/formats/packed_checkpoint.hpp"

namespace ptq {

namespace {

constexpr int kBits = 4, kPerWord = 8;
constexpr std::array<int, kPerWord> kOrder = {0, 2, 4, 6, 1, 3, 5, 7};  // nibble k -> column offset
constexpr std::array<int, kPerWord> kNibbleOf = {0, 4, 1, 5,
                                                 2, 6, 3, 7};  // column offset -> nibble

// Value of output column o in the row of `words` (out / 8 words).
void put(std::int32_t* words, std::int64_t o, std::uint32_t v) {
  auto& w = reinterpret_cast<std::uint32_t*>(words)[o / kPerWord];
  w |= v << (kBits * kNibbleOf[static_cast<std::size_t>(o % kPerWord)]);
}

std::uint32_t get(const std::int32_t* words, std::int64_t o) {
  const auto w = reinterpret_cast<const std::uint32_t*>(words)[o / kPerWord];
  return (w >> (kBits * kNibbleOf[static_cast<std::size_t>(o % kPerWord)])) & 0xfu;
}

}  // namespace

void require_awq_packable(const QuantizedMatrix& m, const std::string& where) {
  if (m.spec.bits != kBits || m.spec.symmetry != Symmetry::Asymmetric ||
      m.spec.granularity != Granularity::Group)
    throw input_error(where, "a 4-bit asymmetric grid in groups (AWQ's GEMM layout)",
                      std::to_string(m.spec.bits) + " bits");
  require_whole_words(m, where);
  require_natural_groups(m, where);
  require_half_scales(m, where);
}

AwqLinear pack_awq(const QuantizedMatrix& m, const std::string& where) {
  require_awq_packable(m, where);
  AwqLinear t;
  t.in = m.columns();
  t.out = m.rows();
  t.groups = m.scales.cols();
  const std::int64_t row_words = t.out / kPerWord;
  t.qweight.assign(static_cast<std::size_t>(t.in * row_words), 0);
  t.qzeros.assign(static_cast<std::size_t>(t.groups * row_words), 0);
  t.scales.resize(static_cast<std::size_t>(t.groups * t.out));
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i) put(t.qweight.data() + i * row_words, o, m.codes(o, i));
    for (std::int64_t g = 0; g < t.groups; ++g) {
      put(t.qzeros.data() + g * row_words, o, static_cast<std::uint32_t>(m.zeros(o, g)));
      t.scales[static_cast<std::size_t>(g * t.out + o)] = float_to_half(m.scales(o, g));
    }
  }
  return t;
}

QuantizedMatrix unpack_awq(const AwqLinear& t, const QuantSpec& spec, const std::string& where) {
  if (t.out <= 0 || t.out % kPerWord != 0)
    throw input_error(where, "a multiple of 8 outputs", std::to_string(t.out));
  require_groups(spec, t.in, t.groups, where);
  const std::int64_t row_words = t.out / kPerWord;
  require_size(where, "qweight", t.qweight.size(), t.in * row_words);
  require_size(where, "qzeros", t.qzeros.size(), t.groups * row_words);
  require_size(where, "scales", t.scales.size(), t.groups * t.out);
  QuantizedMatrix m{spec, CodeMatrix(t.out, t.in), MatrixRM(t.out, t.groups),
                    MatrixRM(t.out, t.groups),
                    std::vector<std::int32_t>(static_cast<std::size_t>(t.in))};
  for (std::int64_t i = 0; i < t.in; ++i)
    m.g_idx[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i / spec.group_size);
  for (std::int64_t o = 0; o < t.out; ++o) {
    for (std::int64_t i = 0; i < t.in; ++i)
      m.codes(o, i) = static_cast<std::uint8_t>(get(t.qweight.data() + i * row_words, o));
    for (std::int64_t g = 0; g < t.groups; ++g) {
      m.zeros(o, g) = static_cast<float>(get(t.qzeros.data() + g * row_words, o));
      m.scales(o, g) = half_to_float(t.scales[static_cast<std::size_t>(g * t.out + o)]);
    }
  }
  return m;
}

nlohmann::ordered_json awq_quantization_config(const QuantSpec& spec) {
  return {{"quant_method", "awq"}, {"bits", spec.bits}, {"group_size", spec.group_size},
          {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
}

std::optional<QuantSpec> read_awq_quantization_config(const nlohmann::json& config,
                                                      const std::string& where) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || !it->is_object() || it->value("quant_method", "") != "awq")
    return std::nullopt;
  const std::string w = where + ": quantization_config";
  if (it->value("bits", 0) != kBits || it->value("version", "") != "gemm" ||
      !it->value("zero_point", false))
    throw input_error(w, "bits 4, zero_point true, version gemm", it->dump());
  QuantSpec spec;
  spec.bits = kBits;
  spec.symmetry = Symmetry::Asymmetric;
  spec.granularity = Granularity::Group;
  spec.group_size = it->value("group_size", 0);
  spec.scale_storage = ScaleStorage::f16;
  if (spec.group_size <= 0)
    throw input_error(w + ".group_size", "a positive group size", it->dump());
  return spec;
}

QuantizedMatrix read_awq_linear(const Checkpoint& packed, const std::string& base,
                                const QuantSpec& spec, const std::string& where) {
  const TensorView& q = packed.require(base + ".qweight");
  // Not empty: an empty tensor's other dimension is unbounded, and multiplied below.
  if (q.shape.size() != 2 || q.numel() == 0)
    throw input_error(
        where + ".qweight", "int32 [in, out / 8], not empty",
        std::to_string(q.shape.size()) + "-D, " + std::to_string(q.numel()) + " values");
  AwqLinear l;
  l.in = q.shape[0];
  l.out = q.shape[1] * kPerWord;
  l.qweight = packed_values<std::int32_t>(packed, base + ".qweight", DType::I32);
  l.qzeros = packed_values<std::int32_t>(packed, base + ".qzeros", DType::I32);
  l.scales = packed_values<std::uint16_t>(packed, base + ".scales", DType::F16);
  l.groups = l.out > 0 ? static_cast<std::int64_t>(l.scales.size()) / l.out : 0;
  return unpack_awq(l, spec, where);
}

Checkpoint dequantized_awq_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed,
                                      const QuantSpec& spec) {
  constexpr std::string_view kParts[] = {".qweight", ".qzeros", ".scales"};
  return with_linears_dequantized(dir, packed, ".qweight", kParts, [&](const std::string& base) {
    return read_awq_linear(packed, base, spec, dir.string() + ": " + base).dequantize();
  });
}

}  // namespace ptq
