#pragma once
// Reading packed Hugging Face checkpoints (GPTQ, compressed-tensors): a
// tensor's values checked against the dtype the format stores, and the
// checkpoint with each packed Linear replaced by its float32 weight.
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"
#include "io/error.hpp"
#include "io/safetensors.hpp"

namespace ptq {

// InputError naming the checkpoint and tensor when it is missing or not `dtype`.
template <class T>
std::vector<T> packed_values(const Checkpoint& packed, const std::string& name, DType dtype) {
  const TensorView& t = packed.require(name);
  if (t.dtype != dtype)
    throw input_error(packed.path().string() + ": " + name, std::string(dtype_name(dtype)),
                      std::string(dtype_name(t.dtype)));
  std::vector<T> v(t.bytes.size() / sizeof(T));
  std::memcpy(v.data(), t.bytes.data(), v.size() * sizeof(T));
  return v;
}

// InputError naming `where` unless a Linear of `in` inputs with `groups`
// scale groups per row fits `spec` (its group size, or one group per channel).
void require_groups(const QuantSpec& spec, std::int64_t in, std::int64_t groups,
                    const std::string& where);

// Every tensor named <base><marker> marks a packed Linear: `decode(base)`
// gives its weight, stored as <base>.weight (float32), and the tensors
// <base><part> for each of `parts` are dropped; the rest is copied as stored.
Checkpoint with_linears_dequantized(const std::filesystem::path& dir, const Checkpoint& packed,
                                    std::string_view marker,
                                    std::span<const std::string_view> parts,
                                    const std::function<MatrixRM(const std::string& base)>& decode);

}  // namespace ptq
