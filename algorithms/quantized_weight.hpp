#pragma once
// One quantized weight matrix, whatever grid it was rounded onto: the
// vocabulary type that drivers produce and every writer takes.
//   QuantizedMatrix  uniform integer grid (RTN, GPTQ, AWQ, int8): codes, scales, zeros, g_idx
//   Nf4Matrix        NormalFloat-4 table with double-quantized absmax
//   GgmlBlocks       one of ggml's block grids (Q4_0 ... Q6_K, IQ4_NL/XS)
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "algorithms/ggml_grid.hpp"
#include "algorithms/matrix.hpp"
#include "algorithms/nf4.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

using QuantizedWeight = std::variant<QuantizedMatrix, Nf4Matrix, GgmlBlocks>;

// W' in float32, [rows, cols].
MatrixRM dequantize(const QuantizedWeight& q);

// The parts of a fused Linear (Phi-3's qkv_proj holds q, k and v) as one
// weight, their rows stacked in order: what a format that stores the fused
// module writes. The parts must share the grid and the column layout (spec and
// g_idx, or ggml type); NF4 parts must be slices of one matrix (its absmax is
// double-quantized per matrix: nf4_stack_rows). Errors name `where`, the fused
// tensor.
QuantizedWeight stack_rows(std::span<const QuantizedWeight> parts, const std::string& where);
// Rows [first, first + rows) of a weight: a part of a fused Linear read back.
QuantizedWeight slice_rows(const QuantizedWeight& fused, std::int64_t first, std::int64_t rows,
                           const std::string& where);

// The uniform grid (RangeRule::Ggml or GgmlMin) that rounds onto ggml's Q4_0,
// Q4_1, Q5_0, Q5_1 or Q8_0 exactly, for GPTQ and AWQ; nullopt for the other grids.
std::optional<QuantSpec> ggml_uniform_spec(GgmlGrid grid);

// A matrix quantized on ggml_uniform_spec(grid) as that grid's blocks (same
// values: d is the float16 scale, Q4_1/Q5_1's m is -zero * d, codes as ggml
// stores them).
GgmlBlocks to_ggml_blocks(const QuantizedMatrix& m, GgmlGrid grid);
// The same blocks for any grid whose values they hold exactly: that grid, or
// for Q4_0/Q5_0/Q8_0 a symmetric one of the same bits with zero 2^(bits-1),
// float16 scales and natural groups (or channels) spanning whole blocks;
// nullopt otherwise.
std::optional<GgmlBlocks> exact_ggml_blocks(const QuantizedMatrix& m, GgmlGrid grid);

}  // namespace ptq
