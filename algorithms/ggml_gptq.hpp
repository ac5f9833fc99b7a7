#pragma once
// GPTQ inside ggml's block grids (llama.cpp's quantization types): each block's
// scales, mins and sub-block scales are chosen by ggml's own importance-weighted
// search (the imatrix search of llama-quantize, weighted by diag H), GPTQ then
// rounds column by column with error feedback onto that grid, and finally each
// row's stored scales are refit under H with the codes fixed: the sub-block
// scales and mins (then rounded to the integers ggml stores) and the block
// scales d and mins dmin (then rounded to float16). The result is an ordinary
// GgmlBlocks: its bytes are a valid tensor of that type.
#include "algorithms/ggml_grid.hpp"
#include "algorithms/gptq.hpp"

namespace ptq {

// What is refit under H after GPTQ's rounding, codes fixed.
// Each is tried only after the ones above it and kept where it lowers the
// row's error under H; SubBlockScales lowered the KL on validation text for
// every k-quant and IQ4_XS on both trained models (docs/bench/ggml_refit.md).
enum class GgmlRefit {
  None,            // nothing: the search's scales
  Scales,          // each block's d (and dmin), sub-block integers fixed
  SubBlockScales,  // also the sub-block scales and mins (k-quants, IQ4_XS), then d again
};

struct GgmlGptqConfig {
  // Damping, lazy block size, column order, precision and row chunks; its
  // spec, group_grids and clip are not used.
  GptqConfig gptq;
  // Where the blocks' scales come from: Dynamic, ggml's search on the
  // error-updated weights of a block when its first column comes up (natural
  // column order only); Static, the same search on the original weights up
  // front (act-order allowed).
  GroupGrids scales = GroupGrids::Dynamic;
  GgmlRefit refit = GgmlRefit::SubBlockScales;

  void validate() const;  // InputError naming the field
};

struct GgmlGptqResult {
  GgmlBlocks blocks;
  double loss = 0;  // GPTQ's loss (GptqResult::loss), before the refit
};

// W: [out, in], in a multiple of the grid's block size; hessian from
// prepare_hessian(H, config.gptq) with H the layer's Hessian proxy, status Ok.
// Deterministic for any thread count.
GgmlGptqResult ggml_gptq(GgmlGrid grid, const MatrixRM& W, const Eigen::MatrixXd& H,
                         const GptqHessian& hessian, const GgmlGptqConfig& config);

// The LevelGrid holding `q`'s values (its cells are q's sub-blocks, or blocks
// where a type has none): levels[i] is code i's integer level (Q8_0's code is
// i - 128), scale and offset per cell as ggml's dequantization computes them.
LevelGrid ggml_level_grid(const GgmlBlocks& q);

}  // namespace ptq
