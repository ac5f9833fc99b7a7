#include "pipeline/quantized_store.hpp"

#include "io/error.hpp"

namespace ptq {

std::string linear_group_path(int layer, LinearRole role) {
  return "layers/" + std::to_string(layer) + "/" + std::string(linear_role_name(role));
}

namespace {
std::vector<std::int64_t> shape_of(const auto& m) { return {m.rows(), m.cols()}; }
std::vector<std::int64_t> length_of(const auto& v) { return {static_cast<std::int64_t>(v.size())}; }

void write_nf4(H5Writer& out, const std::string& p, const Nf4Matrix& m) {
  out.write<std::uint8_t>(p + "/nf4_codes", m.codes, {m.rows, m.cols});
  out.write<std::uint8_t>(p + "/absmax_codes", m.absmax_codes, length_of(m.absmax_codes));
  out.write<float>(p + "/absmax_scales", m.absmax_scales, length_of(m.absmax_scales));
  out.set_attribute(p, "format", std::string("nf4"));
  out.set_attribute(p, "block_size", std::int64_t{m.config.block_size});
  out.set_attribute(p, "absmax_block_size", std::int64_t{m.config.absmax_block_size});
  out.set_attribute(p, "absmax_offset", double{m.absmax_offset});
}

Nf4Matrix read_nf4(const H5Reader& in, const std::string& p) {
  Nf4Matrix m;
  const auto shape = in.shape(p + "/nf4_codes");
  if (shape.size() != 2) throw input_error(in.path().string() + ": " + p, "nf4_codes [out, in]", "another rank");
  m.rows = static_cast<int>(shape[0]);
  m.cols = static_cast<int>(shape[1]);
  m.config.block_size = static_cast<int>(in.int_attribute(p, "block_size"));
  m.config.absmax_block_size = static_cast<int>(in.int_attribute(p, "absmax_block_size"));
  m.config.validate();
  m.codes = in.read<std::uint8_t>(p + "/nf4_codes");
  m.absmax_codes = in.read<std::uint8_t>(p + "/absmax_codes");
  m.absmax_scales = in.read<float>(p + "/absmax_scales");
  m.absmax_offset = static_cast<float>(in.float_attribute(p, "absmax_offset"));
  const std::size_t blocks = (m.codes.size() + m.config.block_size - 1) / m.config.block_size;
  if (m.absmax_codes.size() != blocks ||
      m.absmax_scales.size() != (blocks + m.config.absmax_block_size - 1) / m.config.absmax_block_size)
    throw input_error(in.path().string() + ": " + p, std::to_string(blocks) + " absmax codes and their scales",
                      std::to_string(m.absmax_codes.size()) + " codes, " + std::to_string(m.absmax_scales.size()) +
                          " scales");
  return m;
}

void write_uniform(H5Writer& out, const std::string& p, const QuantizedMatrix& m) {
  out.write<std::uint8_t>(p + "/codes", std::span(m.codes.data(), m.codes.size()), shape_of(m.codes));
  out.write<float>(p + "/scales", std::span(m.scales.data(), m.scales.size()), shape_of(m.scales));
  const Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zeros =
      m.zeros.cast<std::int32_t>();
  out.write<std::int32_t>(p + "/zeros", std::span(zeros.data(), zeros.size()), shape_of(zeros));
  out.write<std::int32_t>(p + "/g_idx", m.g_idx, {static_cast<std::int64_t>(m.g_idx.size())});
  out.set_attribute(p, "bits", std::int64_t{m.spec.bits});
  out.set_attribute(p, "symmetric", std::int64_t{m.spec.symmetry == Symmetry::Symmetric});
  out.set_attribute(p, "granularity", std::int64_t{static_cast<int>(m.spec.granularity)});
  out.set_attribute(p, "min_max_range", std::int64_t{m.spec.range == RangeRule::MinMax});
  out.set_attribute(p, "group_size", std::int64_t{m.spec.group_size});
}

void read_uniform(const H5Reader& in, const std::string& p, QuantizedMatrix& m) {
  m.spec.bits = static_cast<int>(in.int_attribute(p, "bits"));
  m.spec.symmetry = in.int_attribute(p, "symmetric") ? Symmetry::Symmetric : Symmetry::Asymmetric;
  m.spec.granularity = static_cast<Granularity>(in.int_attribute(p, "granularity"));
  if (in.has_attribute(p, "min_max_range") && in.int_attribute(p, "min_max_range") != 0)
    m.spec.range = RangeRule::MinMax;
  m.spec.group_size = static_cast<int>(in.int_attribute(p, "group_size"));
  const auto cs = in.shape(p + "/codes");
  const auto ss = in.shape(p + "/scales");
  if (cs.size() != 2 || ss.size() != 2 || ss[0] != cs[0])
    throw input_error(in.path().string() + ": " + p, "codes [out, in] and scales [out, groups]", "other shapes");
  const auto codes = in.read<std::uint8_t>(p + "/codes");
  const auto scales = in.read<float>(p + "/scales");
  const auto zeros = in.read<float>(p + "/zeros");
  m.codes = Eigen::Map<const CodeMatrix>(codes.data(), cs[0], cs[1]);
  m.scales = Eigen::Map<const MatrixRM>(scales.data(), ss[0], ss[1]);
  m.zeros = Eigen::Map<const MatrixRM>(zeros.data(), ss[0], ss[1]);
  m.g_idx = in.read<std::int32_t>(p + "/g_idx");
}

}  // namespace

void write_quantized_linear(H5Writer& out, const QuantizedLinear& q, bool with_timing) {
  const std::string p = linear_group_path(q.layer, q.role);
  if (q.nf4)
    write_nf4(out, p, *q.nf4);
  else
    write_uniform(out, p, q.matrix);
  const auto& r = q.report;
  out.set_attribute(p, "weight_mse", r.weight_mse);
  out.set_attribute(p, "gptq_loss", r.gptq_loss);
  out.set_attribute(p, "damping", r.damping);
  out.set_attribute(p, "damping_retries", std::int64_t{r.damping_retries});
  out.set_attribute(p, "cholesky_failed", std::int64_t{r.cholesky_failed});
  if (with_timing) out.set_attribute(p, "seconds", r.seconds);
}

QuantizedLinear read_quantized_linear(const H5Reader& in, int layer, LinearRole role) {
  const std::string p = linear_group_path(layer, role);
  QuantizedLinear q{layer, role, {}, {}, {}};
  if (in.has_attribute(p, "format") && in.string_attribute(p, "format") == "nf4")
    q.nf4 = read_nf4(in, p);
  else
    read_uniform(in, p, q.matrix);
  auto& r = q.report;
  r.layer = layer;
  r.role = role;
  r.weight_mse = in.float_attribute(p, "weight_mse");
  r.gptq_loss = in.float_attribute(p, "gptq_loss");
  r.damping = in.float_attribute(p, "damping");
  r.damping_retries = static_cast<int>(in.int_attribute(p, "damping_retries"));
  r.cholesky_failed = in.int_attribute(p, "cholesky_failed") != 0;
  if (in.has_attribute(p, "seconds")) r.seconds = in.float_attribute(p, "seconds");
  return q;
}

}  // namespace ptq
