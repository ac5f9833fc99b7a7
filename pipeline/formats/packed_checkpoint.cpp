#include "pipeline/formats/packed_checkpoint.hpp"

#include <climits>
#include <cmath>
#include <set>

#include "io/dtype.hpp"

namespace ptq {

void require_whole_words(const QuantizedMatrix& m, const std::string& where) {
  if (m.rows() % 32 != 0 || m.columns() % 32 != 0)
    throw input_error(where, "in and out features that are multiples of 32 (whole packed words)",
                      "[" + std::to_string(m.rows()) + ", " + std::to_string(m.columns()) + "]");
}

void require_half_scales(const QuantizedMatrix& m, const std::string& where) {
  for (Eigen::Index i = 0; i < m.scales.size(); ++i) {
    const float s = m.scales.data()[i];
    if (half_to_float(float_to_half(s)) != s)
      throw input_error(where, "float16 scales (a grid fitted with ScaleStorage::f16)",
                        "scale " + std::to_string(s));
  }
}

void require_integer_zeros(const QuantizedMatrix& m, const std::string& where) {
  for (Eigen::Index i = 0; i < m.zeros.size(); ++i) {
    const float z = m.zeros.data()[i];
    if (z != std::nearbyint(z) || z < 0 || z > static_cast<float>(m.spec.maxq()))
      throw input_error(where, "integer zero points in [0, 2^bits - 1]",
                        "zero " + std::to_string(z));
  }
}

void require_natural_groups(const QuantizedMatrix& m, const std::string& where) {
  const int width = m.spec.granularity == Granularity::Group ? m.spec.group_size : m.columns();
  for (int c = 0; c < m.columns(); ++c)
    if (m.g_idx[c] != c / width)
      throw input_error(where,
                        "column c in group c / group_size (the format stores no act-order g_idx)",
                        "column " + std::to_string(c) + " in group " + std::to_string(m.g_idx[c]));
}

void require_size(const std::string& where, const char* name, std::size_t got, std::int64_t want) {
  if (got != static_cast<std::size_t>(want))
    throw input_error(where + " " + name, std::to_string(want) + " values", std::to_string(got));
}

void require_groups(const QuantSpec& spec, std::int64_t in, std::int64_t groups,
                    const std::string& where) {
  // QuantSpec counts columns in an int.
  if (in <= 0 || in > INT_MAX)
    throw input_error(where, "a positive number of inputs below 2^31", std::to_string(in));
  const int want = spec.groups_per_row(static_cast<int>(in));
  if (want != groups) {
    const std::string rule = spec.granularity == Granularity::Group
                                 ? "groups of " + std::to_string(spec.group_size)
                                 : "per channel";
    throw input_error(where,
                      std::to_string(want) + " scale groups per row (" + std::to_string(in) +
                          " inputs, " + rule + ")",
                      std::to_string(groups));
  }
}

Checkpoint with_linears_dequantized(
    const std::filesystem::path& dir, const Checkpoint& packed, std::string_view marker,
    std::span<const std::string_view> parts,
    const std::function<MatrixRM(const std::string& base)>& decode) {
  std::set<std::string> consumed;
  std::vector<OwnedTensor> out;
  for (const TensorView* t : packed.tensors()) {
    if (!t->name.ends_with(marker)) continue;
    const std::string base = t->name.substr(0, t->name.size() - marker.size());
    const MatrixRM w = decode(base);
    out.push_back(OwnedTensor::float32(base + ".weight", {w.rows(), w.cols()},
                                       {w.data(), static_cast<std::size_t>(w.size())}));
    for (std::string_view part : parts) consumed.insert(base + std::string(part));
  }
  for (const TensorView* t : packed.tensors())
    if (!consumed.contains(t->name))
      out.push_back(
          {t->name, t->dtype, t->shape, std::vector<std::byte>(t->bytes.begin(), t->bytes.end())});
  return Checkpoint::from_memory(dir, std::move(out));
}

}  // namespace ptq
