#pragma once
// What the packed Hugging Face formats (GPTQ, AWQ, compressed-tensors) share:
// the checks a grid passes before it is packed, the size check of a packed
// tensor, a tensor's values checked against the dtype the format stores, and
// the checkpoint with each packed Linear replaced by its float32 weight.
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"
#include "algorithms/quantized_matrix.hpp"
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

// Checks on a grid to be packed, each an InputError naming `where`: in and out
// features that fill whole 32-bit words; scales that are float16 values (a grid
// fitted with ScaleStorage::f16); integer zero points in [0, 2^bits - 1];
// every column in its natural group c / group_size (formats without g_idx).
void require_whole_words(const QuantizedMatrix& m, const std::string& where);
void require_half_scales(const QuantizedMatrix& m, const std::string& where);
void require_integer_zeros(const QuantizedMatrix& m, const std::string& where);
void require_natural_groups(const QuantizedMatrix& m, const std::string& where);
// InputError naming `where` and `name` when a packed tensor holds `got` values, not `want`.
void require_size(const std::string& where, const char* name, std::size_t got, std::int64_t want);

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
