#pragma once
// NormalFloat-4 with double-quantized block scales, as bitsandbytes'
// quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)
// (Dettmers et al. 2023, QLoRA, sections 3 and "Double Quantization"):
//  1. W is flattened row-major and cut into blocks of `block_size` consecutive
//     weights; each block's absmax a_b scales it into [-1, 1] and every weight
//     becomes the index of the nearest of the 16 NF4 values (nf4_values()).
//  2. The absmax vector itself is stored in 8 bits: offset = mean(a), then
//     (a - offset) in blocks of `absmax_block_size` with their own float absmax,
//     each value the nearest of the signed 8-bit dynamic map (dynamic_map()).
// Dequantized weight = nf4_values()[code] * (dynamic_map()[a_code] * a_scale + offset).
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "algorithms/matrix.hpp"

namespace ptq {

struct Nf4Config {
  int block_size = 64;          // weights per absmax
  int absmax_block_size = 256;  // absmax values per second-level scale

  void validate() const;  // InputError naming the field
};

struct Nf4Matrix {
  int rows = 0, cols = 0;  // W: [rows, cols]
  Nf4Config config;
  std::vector<std::uint8_t> codes;         // [rows * cols], row-major, each in [0, 15]
  std::vector<std::uint8_t> absmax_codes;  // [blocks], indices into dynamic_map()
  std::vector<float> absmax_scales;        // [ceil(blocks / absmax_block_size)]
  float absmax_offset = 0.0f;              // mean of the float absmax values
  // A part of a fused module's rows (Phi-3's q of qkv_proj) keeps the module's
  // offset and second-level scales: its first absmax value is at this position
  // of the first second-level block. 0 for a matrix quantized whole.
  int absmax_phase = 0;

  int blocks() const { return static_cast<int>(absmax_codes.size()); }
  std::vector<float> absmax() const;  // the dequantized per-block absmax [blocks]
  MatrixRM dequantize() const;
};

// The 16 NF4 values, ascending (bitsandbytes create_normal_map / kernels.cu).
const std::array<float, 16>& nf4_values();
// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), ascending.
const std::array<float, 256>& dynamic_map();

// Index of the value of `table` (ascending) nearest to x; ties go to the lower.
std::uint8_t nearest_index(float x, std::span<const float> table);

// W: non-empty and finite (InputError otherwise).
Nf4Matrix nf4_quantize(const MatrixRM& W, const Nf4Config& config);

// Rows [first, first + rows) of m, with the absmax values and second-level
// scales that serve them; the rows must start and end on absmax block
// boundaries. Errors name `where`.
Nf4Matrix nf4_slice_rows(const Nf4Matrix& m, int first, int rows, const std::string& where);
// The parts' rows stacked: the exact inverse of slicing one matrix, so the parts
// must share the configuration, columns and offset, follow on in the absmax
// grouping, and agree on a second-level scale they share.
Nf4Matrix nf4_stack_rows(std::span<const Nf4Matrix> parts, const std::string& where);

}  // namespace ptq
