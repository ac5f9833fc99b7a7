#pragma once
// Scales folded into a decoder block before rounding, whichever method chose
// them: AWQ's searched scales (and its clips) or SmoothQuant's migration
// scales. They are data: saved in quantized.h5 and the resume checkpoints,
// and replayed by --load-scales.
//
// HDF5 layout (the group is named awq/ for compatibility with earlier outputs):
//   awq/layers/<i>/scales/<site> float32 [in]  attributes: roles, ratio, loss
//   awq/layers/<i>/clip/<role>   float32 [out, groups]
//   awq/layers/<i>/scales/experts/<e>/up, awq/layers/<i>/clip/experts/<e>/<role>:
//   an expert's, in a mixture-of-experts layer
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"
#include "calibrate/block.hpp"
#include "io/hdf5.hpp"

namespace ptq {

// The op whose output channels the scales divide, so that the Linears reading
// that output, whose input columns the scales multiply, compute the same
// thing (in llm-awq's order).
enum class FoldSite { input_norm, v, post_attention_norm, up };

// In a mixture-of-experts layer, post_attention_norm's scales multiply every
// expert's gate and up and the float router (which reads the same normed input,
// so the routing is unchanged), and each expert has a site `up` of its own:
// its up rows divided, its down columns multiplied.
struct ScaleGroup {
  FoldSite site = FoldSite::input_norm;
  VectorF scales;      // [in features of the scaled Linears]
  float ratio = 0.0f;  // AWQ: the searched exponent; SmoothQuant: alpha
  double loss = 0.0;   // AWQ: the module's output error at ratio; SmoothQuant: 0
  int expert = -1;     // site up of a mixture layer: the expert's
};

// AWQ's clip: W clamped to [-m, m] per row and group.
struct WeightClip {
  LinearRole role = LinearRole::o;
  MatrixRM max_val;  // [out, groups]
  int expert = -1;   // a mixture layer's gate, up or down: the expert's
};

struct BlockScales {
  int layer = 0;
  std::vector<ScaleGroup> scales;  // in application order
  std::vector<WeightClip> clips;
};

// The Linears a site's scales multiply ({q,k,v}, {o}, {gate,up}, {down}) and
// the block input they read.
std::span<const LinearRole> scaled_roles(FoldSite site);
LinearInput scaled_input(FoldSite site);
std::string_view fold_site_name(FoldSite site);
// What a site's scales fold into: a sublayer's norm (input_norm,
// post_attention_norm), or the Linear whose output rows feed the scaled input
// (v, up).
std::optional<NormRole> folded_norm(FoldSite site);
LinearRole folded_linear(FoldSite site);  // v or up; a norm site has none

void write_block_scales(H5Writer& out, const BlockScales& block);
// InputError naming the file and dataset when the block is missing or a shape
// does not fit the model (`spec` gives the clip groups).
BlockScales read_block_scales(const H5Reader& in, int layer, const ModelConfig& config,
                              const QuantSpec& spec);

}  // namespace ptq
