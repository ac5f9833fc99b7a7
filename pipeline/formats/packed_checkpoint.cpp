#include "pipeline/formats/packed_checkpoint.hpp"

#include <set>

namespace ptq {

void require_groups(const QuantSpec& spec, std::int64_t in, std::int64_t groups,
                    const std::string& where) {
  if (in <= 0) throw input_error(where, "a positive number of inputs", std::to_string(in));
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
    OwnedTensor weight{base + ".weight", DType::F32, {w.rows(), w.cols()}, {}};
    weight.bytes.resize(static_cast<std::size_t>(w.size()) * sizeof(float));
    std::memcpy(weight.bytes.data(), w.data(), weight.bytes.size());
    out.push_back(std::move(weight));
    for (std::string_view part : parts) consumed.insert(base + std::string(part));
  }
  for (const TensorView* t : packed.tensors())
    if (!consumed.contains(t->name))
      out.push_back(
          {t->name, t->dtype, t->shape, std::vector<std::byte>(t->bytes.begin(), t->bytes.end())});
  return Checkpoint::from_memory(dir, std::move(out));
}

}  // namespace ptq
