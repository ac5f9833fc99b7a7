#pragma once
// AWQ for one decoder block (llm-awq run_awq: auto_scale_block, apply_scale,
// auto_clip_block, apply_clip), with the search and its application kept apart
// so that the choices can be saved to quantized.h5 and replayed (--load-scales).
//
// The block's input is the float model's activation; the search sees the
// Linear inputs of all calibration tokens and leaves the block's float output
// (before scaling) in place of the input.
#include <filesystem>
#include <vector>

#include "algorithms/awq.hpp"
#include "calibrate/block.hpp"
#include "io/hdf5.hpp"

namespace ptq {

class Model;

// The op whose output the scaled Linears read: its output channels are divided
// by the scales that multiply the Linears' input columns.
enum class AwqPrevOp { input_norm, v, post_attention_norm, up };  // in llm-awq's order

struct AwqScaleGroup {
  AwqPrevOp prev = AwqPrevOp::input_norm;
  VectorF scales;  // [in features of the scaled Linears]
  float ratio = 0.0f;
  double loss = 0.0;
};

struct AwqClip {
  LinearRole role = LinearRole::o;
  MatrixRM max_val;  // [out, groups]: W clamped to [-m, m] per row and group
};

struct AwqBlock {
  int layer = 0;
  std::vector<AwqScaleGroup> scales;  // in application order
  std::vector<AwqClip> clips;
};

enum class AwqClipMode { None, Search };

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

// The Linears an AwqPrevOp's scales multiply ({q,k,v}, {o}, {gate,up}, {down}).
std::span<const LinearRole> awq_scaled_roles(AwqPrevOp prev);
std::string_view awq_prev_name(AwqPrevOp prev);

// x: [windows * seq_len, hidden], the block's float input; replaced by its float output.
AwqBlock awq_search_block(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len,
                          const AwqOptions& options);

// Folds the scales, then the clips, into w (output-invariant before rounding,
// except for the clips). `spec` gives the clip groups.
void awq_apply_block(BlockWeights& w, const AwqBlock& awq, const QuantSpec& spec);

// The norm weights as the folded scales leave them (tensor name, float32 values),
// for the output checkpoint; Linear weights are written from their quantized form.
struct FoldedNorm {
  std::string name;
  FloatVector values;
};
std::vector<FoldedNorm> awq_folded_norms(const Model& model, std::span<const AwqBlock> blocks);

// HDF5 layout: awq/layers/<i>/scales/<prev> float32 [in] (attributes ratio, loss, roles)
// and awq/layers/<i>/clip/<role> float32 [out, groups].
void write_awq_block(H5Writer& out, const AwqBlock& awq);
// InputError naming the file and dataset when the block is missing or a shape
// does not fit the model (`spec` gives the clip groups).
AwqBlock read_awq_block(const H5Reader& in, int layer, const ModelConfig& config, const QuantSpec& spec);

}  // namespace ptq
