#include "pipeline/formats/weight_record.hpp"

#include <climits>

#include "io/error.hpp"
#include "pipeline/formats/gguf_blocks.hpp"

namespace ptq {

namespace {

std::vector<std::int64_t> shape_of(const auto& m) { return {m.rows(), m.cols()}; }
std::vector<std::int64_t> length_of(const auto& v) { return {static_cast<std::int64_t>(v.size())}; }

std::string where(const H5Reader& in, const std::string& p) {
  return in.path().string() + ": " + p;
}

void write_nf4(H5Writer& out, const std::string& p, const Nf4Matrix& m) {
  out.write<std::uint8_t>(p + "/nf4_codes", m.codes, {m.rows, m.cols});
  out.write<std::uint8_t>(p + "/absmax_codes", m.absmax_codes, length_of(m.absmax_codes));
  out.write<float>(p + "/absmax_scales", m.absmax_scales, length_of(m.absmax_scales));
  out.set_attribute(p, "format", std::string("nf4"));
  out.set_attribute(p, "block_size", std::int64_t{m.config.block_size});
  out.set_attribute(p, "absmax_block_size", std::int64_t{m.config.absmax_block_size});
  out.set_attribute(p, "absmax_offset", double{m.absmax_offset});
  if (m.absmax_phase != 0) out.set_attribute(p, "absmax_phase", std::int64_t{m.absmax_phase});
}

Nf4Matrix read_nf4(const H5Reader& in, const std::string& p) {
  Nf4Matrix m;
  const auto shape = in.shape(p + "/nf4_codes");
  if (shape.size() != 2 || shape[0] > INT_MAX || shape[1] > INT_MAX)
    throw input_error(where(in, p), "nf4_codes [out, in] of int sizes", "another shape");
  m.rows = static_cast<int>(shape[0]);
  m.cols = static_cast<int>(shape[1]);
  m.config.block_size = static_cast<int>(in.int_attribute(p, "block_size"));
  m.config.absmax_block_size = static_cast<int>(in.int_attribute(p, "absmax_block_size"));
  m.config.validate();
  m.codes = in.read<std::uint8_t>(p + "/nf4_codes");
  for (const std::uint8_t code : m.codes)
    if (code >= nf4_values().size())
      throw input_error(where(in, p) + " nf4_codes", "codes in [0, 15]", std::to_string(code));
  m.absmax_codes = in.read<std::uint8_t>(p + "/absmax_codes");
  m.absmax_scales = in.read<float>(p + "/absmax_scales");
  m.absmax_offset = static_cast<float>(in.float_attribute(p, "absmax_offset"));
  if (in.has_attribute(p, "absmax_phase")) {
    const std::int64_t phase = in.int_attribute(p, "absmax_phase");
    if (phase < 0 || phase >= m.config.absmax_block_size)
      throw input_error(where(in, p) + " absmax_phase",
                        "a position in [0, " + std::to_string(m.config.absmax_block_size) + ")",
                        std::to_string(phase));
    m.absmax_phase = static_cast<int>(phase);
  }
  const std::size_t blocks = (m.codes.size() + m.config.block_size - 1) / m.config.block_size;
  const auto phase = static_cast<std::size_t>(m.absmax_phase);
  if (m.absmax_codes.size() != blocks ||
      m.absmax_scales.size() !=
          (phase + blocks + m.config.absmax_block_size - 1) / m.config.absmax_block_size)
    throw input_error(where(in, p), std::to_string(blocks) + " absmax codes and their scales",
                      std::to_string(m.absmax_codes.size()) + " codes, " +
                          std::to_string(m.absmax_scales.size()) + " scales");
  return m;
}

void write_uniform(H5Writer& out, const std::string& p, const QuantizedMatrix& m) {
  out.write<std::uint8_t>(p + "/codes", std::span(m.codes.data(), m.codes.size()),
                          shape_of(m.codes));
  out.write<float>(p + "/scales", std::span(m.scales.data(), m.scales.size()), shape_of(m.scales));
  if (m.spec.range == RangeRule::GgmlMin) {  // -m / d: not an integer
    out.write<float>(p + "/zeros", std::span(m.zeros.data(), m.zeros.size()), shape_of(m.zeros));
  } else {
    const Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zeros =
        m.zeros.cast<std::int32_t>();
    out.write<std::int32_t>(p + "/zeros", std::span(zeros.data(), zeros.size()), shape_of(zeros));
  }
  out.write<std::int32_t>(p + "/g_idx", m.g_idx, {static_cast<std::int64_t>(m.g_idx.size())});
  out.set_attribute(p, "bits", std::int64_t{m.spec.bits});
  out.set_attribute(p, "symmetric", std::int64_t{m.spec.symmetry == Symmetry::Symmetric});
  out.set_attribute(p, "granularity", std::int64_t{static_cast<int>(m.spec.granularity)});
  out.set_attribute(p, "min_max_range", std::int64_t{m.spec.range == RangeRule::MinMax});
  if (m.spec.range == RangeRule::Ggml) out.set_attribute(p, "ggml_range", std::int64_t{1});
  if (m.spec.range == RangeRule::GgmlMin) out.set_attribute(p, "ggml_min_range", std::int64_t{1});
  if (m.spec.scale_storage == ScaleStorage::f16)
    out.set_attribute(p, "f16_scales", std::int64_t{1});
  out.set_attribute(p, "group_size", std::int64_t{m.spec.group_size});
}

// The grid spec's stored enums, each checked against the values it can take.
QuantSpec read_spec(const H5Reader& in, const std::string& p) {
  QuantSpec spec;
  auto flag = [&](const char* name) {
    const std::int64_t v = in.int_attribute(p, name);
    if (v != 0 && v != 1) throw input_error(where(in, p) + " " + name, "0 or 1", std::to_string(v));
    return v == 1;
  };
  spec.bits = static_cast<int>(in.int_attribute(p, "bits"));
  spec.symmetry = flag("symmetric") ? Symmetry::Symmetric : Symmetry::Asymmetric;
  const std::int64_t granularity = in.int_attribute(p, "granularity");
  if (granularity < 0 || granularity > static_cast<int>(Granularity::Group))
    throw input_error(where(in, p) + " granularity", "0 (tensor), 1 (channel) or 2 (group)",
                      std::to_string(granularity));
  spec.granularity = static_cast<Granularity>(granularity);
  if (in.has_attribute(p, "min_max_range") && flag("min_max_range")) spec.range = RangeRule::MinMax;
  if (in.has_attribute(p, "ggml_range") && flag("ggml_range")) spec.range = RangeRule::Ggml;
  if (in.has_attribute(p, "ggml_min_range") && flag("ggml_min_range"))
    spec.range = RangeRule::GgmlMin;
  if (in.has_attribute(p, "f16_scales") && flag("f16_scales"))
    spec.scale_storage = ScaleStorage::f16;
  spec.group_size = static_cast<int>(in.int_attribute(p, "group_size"));
  try {
    spec.validate();
  } catch (const InputError& e) {
    throw input_error(where(in, p), "a valid grid", e.what());
  }
  return spec;
}

QuantizedMatrix read_uniform(const H5Reader& in, const std::string& p) {
  QuantizedMatrix m;
  m.spec = read_spec(in, p);
  const auto cs = in.shape(p + "/codes");
  const auto ss = in.shape(p + "/scales");
  if (cs.size() != 2 || ss.size() != 2 || ss[0] != cs[0] || in.shape(p + "/zeros") != ss ||
      in.shape(p + "/g_idx") != std::vector<std::int64_t>{cs[1]})
    throw input_error(where(in, p), "codes [out, in], scales and zeros [out, groups], g_idx [in]",
                      "other shapes");
  const auto codes = in.read<std::uint8_t>(p + "/codes");
  const auto scales = in.read<float>(p + "/scales");
  const auto zeros = in.read<float>(p + "/zeros");
  m.codes = Eigen::Map<const CodeMatrix>(codes.data(), cs[0], cs[1]);
  m.scales = Eigen::Map<const MatrixRM>(scales.data(), ss[0], ss[1]);
  m.zeros = Eigen::Map<const MatrixRM>(zeros.data(), ss[0], ss[1]);
  m.g_idx = in.read<std::int32_t>(p + "/g_idx");
  for (const std::uint8_t code : codes)
    if (code > m.spec.maxq())
      throw input_error(where(in, p) + " codes", "codes in [0, 2^bits - 1]", std::to_string(code));
  for (const std::int32_t g : m.g_idx)
    if (g < 0 || g >= ss[1])
      throw input_error(where(in, p) + " g_idx", "groups in [0, " + std::to_string(ss[1]) + ")",
                        std::to_string(g));
  return m;
}

void write_ggml(H5Writer& out, const std::string& p, const GgmlBlocks& q) {
  const std::vector<std::byte> bytes = pack(q);
  out.write<std::uint8_t>(
      p + "/ggml_blocks",
      std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()),
      length_of(bytes));
  out.set_attribute(p, "format", std::string("ggml"));
  out.set_attribute(p, "grid", std::string(ggml_grid_info(q.grid).name));
  out.set_attribute(p, "rows", q.rows);
  out.set_attribute(p, "cols", q.cols);
}

GgmlBlocks read_ggml(const H5Reader& in, const std::string& p) {
  const std::string name = in.string_attribute(p, "grid");
  const GgmlGridInfo* info = nullptr;
  std::string names;
  for (const GgmlGridInfo& g : ggml_grids()) {
    if (g.name == name) info = &g;
    names += (names.empty() ? "" : ", ") + std::string(g.name);
  }
  if (info == nullptr) throw input_error(where(in, p) + " grid", "one of " + names, name);
  const auto bytes = in.read<std::uint8_t>(p + "/ggml_blocks");
  return unpack(info->grid, in.int_attribute(p, "rows"), in.int_attribute(p, "cols"),
                std::as_bytes(std::span(bytes)));
}

}  // namespace

void write_weight(H5Writer& out, const std::string& p, const QuantizedWeight& q) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, QuantizedMatrix>) write_uniform(out, p, m);
        if constexpr (std::is_same_v<T, Nf4Matrix>) write_nf4(out, p, m);
        if constexpr (std::is_same_v<T, GgmlBlocks>) write_ggml(out, p, m);
      },
      q);
}

QuantizedWeight read_weight(const H5Reader& in, const std::string& p) {
  if (!in.has_attribute(p, "format")) return read_uniform(in, p);
  const std::string format = in.string_attribute(p, "format");
  if (format == "nf4") return read_nf4(in, p);
  if (format == "ggml") return read_ggml(in, p);
  throw input_error(where(in, p) + " format", "nf4, ggml or none (a uniform grid)", format);
}

}  // namespace ptq
