#pragma once
// ggml's block grids (llama.cpp's quantization types), unpacked: each weight's
// integer code and each block's scales exactly as ggml computes them, before any
// bit packing. How a block's bytes are laid out in a file is the format
// library's business (pipeline/formats/gguf_blocks.hpp); the grid is ours.
//
// W: [rows, cols], row-major. Each row is cut into blocks of block_size
// consecutive weights (cols must be a multiple of it); blocks are numbered
// row-major: block b of row r is r * (cols / block_size) + b. K-quants and IQ4_XS
// split each 256-weight super-block into sub-blocks with their own integer scale.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "algorithms/matrix.hpp"

namespace ptq {

enum class GgmlGrid { q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs };

struct GgmlGridInfo {
  GgmlGrid grid;
  std::string_view name;  // llama.cpp's spelling: "Q4_K", "IQ4_XS", ...
  int block_size;         // weights per (super-)block
  int sub_blocks;         // sub-blocks with their own integer scale per block (1: none)
  bool has_min;           // a per-block (or per-sub-block) offset: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K
  int bits;               // bits of one weight's code
};

std::span<const GgmlGridInfo> ggml_grids();  // one row per GgmlGrid, in enum order
const GgmlGridInfo& ggml_grid_info(GgmlGrid grid);

struct GgmlBlocks {
  GgmlGrid grid = GgmlGrid::q8_0;
  std::int64_t rows = 0, cols = 0;
  // Per block: the (super-)block scale d, as float16 bits.
  std::vector<std::uint16_t> d;
  // Per block, grids with has_min only (else empty), float16 bits: Q4_1/Q5_1's m,
  // Q2_K/Q4_K/Q5_K's dmin.
  std::vector<std::uint16_t> dmin;
  // Per sub-block (blocks * sub_blocks), k-quants and IQ4_XS only, the integer
  // ggml stores before packing: Q2_K 0..15; Q3_K 0..63 (scale = value - 32);
  // Q4_K/Q5_K 0..63; Q6_K -128..127; IQ4_XS 0..63 (scale = value - 32).
  std::vector<std::int8_t> sub_scales;
  // Per sub-block, Q2_K (0..15) and Q4_K/Q5_K (0..63) only, else empty.
  std::vector<std::int8_t> sub_mins;
  // [rows * cols], row-major, one per weight: Q8_0 -128..127; Q4_0, Q4_1, Q4_K
  // 0..15; Q5_0, Q5_1, Q5_K 0..31; Q2_K 0..3; Q3_K 0..7 (value = code - 4);
  // Q6_K 0..63 (value = code - 32); IQ4_NL/IQ4_XS 0..15, an index into
  // iq4nl_values().
  std::vector<std::int8_t> codes;

  std::int64_t blocks() const;  // rows * cols / block_size
};

// A zero-filled GgmlBlocks for a [rows, cols] matrix, every vector sized for `grid`.
GgmlBlocks make_ggml_blocks(GgmlGrid grid, std::int64_t rows, std::int64_t cols);

// IQ4_NL's 16 non-linear levels (ggml kvalues_iq4nl), ascending.
std::span<const std::int8_t, 16> iq4nl_values();

// ggml's quantizer for `grid`, bit for bit what llama-quantize writes for a
// float32 tensor: the reference rounding when `importance` is empty, the
// importance-weighted search otherwise. importance: [cols], one weight per input
// column (llama.cpp's imatrix: the mean of x^2 over the calibration tokens).
// Throws InputError when cols is not a multiple of the block size, when
// importance has the wrong length, or on non-finite weights.
GgmlBlocks ggml_quantize(GgmlGrid grid, const MatrixRM& W, std::span<const float> importance = {});

// W' in float32, as ggml's dequantize_row_* computes it.
MatrixRM dequantize(const GgmlBlocks& q);

}  // namespace ptq
