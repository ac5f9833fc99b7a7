#pragma once
// Internal to algorithms/: the three families of ggml grids, each in its own
// file; ggml_grid.cpp dispatches on GgmlBlocks::grid. `q` arrives with grid,
// rows, cols set and every vector sized for that grid (zero-filled); rows are
// independent, so each family may split them over threads.
#include <span>

#include "algorithms/ggml_grid.hpp"

namespace ptq::ggml_detail {

// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: blocks of 32, one f16 scale (and min). ggml_legacy.cpp
void quantize_legacy(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q);
void dequantize_legacy(const GgmlBlocks& q, MatrixRM& W);

// Q2_K ... Q6_K: super-blocks of 256. ggml_kquants.cpp
void quantize_kquant(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q);
void dequantize_kquant(const GgmlBlocks& q, MatrixRM& W);

// IQ4_NL (blocks of 32) and IQ4_XS (super-blocks of 256). ggml_iq4.cpp
void quantize_iq4(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q);
void dequantize_iq4(const GgmlBlocks& q, MatrixRM& W);

}  // namespace ptq::ggml_detail
