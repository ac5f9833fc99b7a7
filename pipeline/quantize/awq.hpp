#pragma once
// AWQ for one decoder block (llm-awq run_awq: auto_scale_block, apply_scale,
// auto_clip_block, apply_clip), with the search and its application kept apart
// so that the choices can be saved to quantized.h5 and replayed (--load-scales).
//
// The block's input is the float model's activation; the search sees the
// Linear inputs of all calibration tokens and leaves the block's float output
// (before scaling) in place of the input.
#include <vector>

#include "algorithms/awq.hpp"
#include "calibrate/block.hpp"
#include "pipeline/output/block_scales.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

struct AwqOptions {
  QuantSpec spec;  // grid of the searches (range MinMax in the reference)
  AwqScaleConfig scale;
  AwqClipConfig clip;
  AwqClipMode clip_mode = AwqClipMode::Search;
  int batch_windows = 16;  // windows per module evaluation
  // Windows (every k-th) over which the attention and MLP scale searches compare
  // outputs; 0 = all, as the reference. Single-Linear searches always cover all
  // tokens (exactly, through XᵀX); so do the activation means and the clip samples.
  int search_windows = 16;
  void validate() const;
};

// The options of `recipe`'s AWQ searches, on llm-awq's min/max grid.
AwqOptions awq_options(const Recipe& recipe, int batch_windows);

// x: [windows * seq_len, hidden], the block's float input; replaced by its float output.
// A mixture layer's experts are searched too, each on the tokens routed to it
// (block_scales.hpp says where their scales fold).
BlockScales awq_search_block(const ModelConfig& config, const BlockWeights& w, MatrixRM& x, int seq_len,
                          const AwqOptions& options);

}  // namespace ptq
