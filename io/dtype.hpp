#pragma once
// Element types of checkpoint tensors and the float conversions between them.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ptq {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

std::size_t dtype_size(DType t);                       // bytes per element
std::string_view dtype_name(DType t);                  // safetensors spelling: "F16", ...
std::optional<DType> parse_dtype(std::string_view s);  // inverse of dtype_name

float half_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);  // round to nearest even, overflow -> inf
float bf16_to_float(std::uint16_t b);
std::uint16_t float_to_bf16(float f);  // round to nearest even

// Converts `count` elements of a F32/F16/BF16 buffer (little-endian, possibly
// unaligned) to float. Throws InputError for other dtypes naming `what`.
void convert_to_float(DType t, const std::byte* src, std::size_t count, float* dst,
                      std::string_view what);

// The index of the first NaN or infinity in a floating-point buffer (all
// exponent bits set); nullopt when every value is finite or the type is an
// integer one. Writers check every output tensor before its file is renamed
// into place.
std::optional<std::size_t> first_non_finite(DType t, std::span<const std::byte> bytes);

}  // namespace ptq
