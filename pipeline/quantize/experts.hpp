#pragma once
// A mixture-of-experts layer's experts in `ptq quantize` (Mixtral, Qwen3-MoE):
// each expert's gate and up, then its down from the hidden state its quantized
// gate and up give, true-sequential like a dense MLP. Its statistics come from
// the tokens the router sends it, or from every calibration token
// (Recipe::expert_calibration, and for an expert routed fewer than
// experts.min_tokens); the router stays in float, as llama.cpp and the Hugging
// Face formats keep it.
#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "calibrate/block.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// The calibration stream at a mixture layer, batch by batch: its MLP input (the
// normed stream) and the residual add of the layer's output. With the recipe
// target float_outputs, also the float model's MLP input (same rows): each
// expert's GPTAQ target is the float expert's output on the float model's
// input, over the tokens the quantized model routes to it.
struct ExpertBatches {
  Eigen::Index count = 0;
  std::function<MatrixRM(Eigen::Index batch)> mlp_in;
  std::function<void(Eigen::Index batch, const MatrixRM& output)> add;
  std::function<MatrixRM(Eigen::Index batch)> float_mlp_in;  // empty: target quantized_inputs
};

inline constexpr std::array<LinearRole, 2> kExpertGateUp = {LinearRole::gate, LinearRole::up};
inline constexpr std::array<LinearRole, 1> kExpertDown = {LinearRole::down};

// What the record says of an expert's statistics (LinearReport).
struct ExpertSource {
  std::int64_t routed_tokens = -1;  // -1: without calibration
  ExpertHessian hessian = ExpertHessian::routed;
};

// The rule for an expert routed `routed` calibration tokens: its Hessians come
// from every token when the recipe asks for all-expert calibration or when
// fewer than experts.min_tokens (0: the hidden size) were routed to it.
bool expert_takes_every_token(const Recipe& recipe, const ModelConfig& config, std::int64_t routed);

// Rounds expert `expert`'s Linears `roles` of layer w.layer, which read one
// input, under its Hessian (null: RTN; GPTQ's factor prepared once for them),
// toward GPTAQ's target when `correction` is given (quantize_toward), and
// swaps in their dequantized weights.
std::vector<QuantizedLinear> quantize_expert_linears(
    const Recipe& recipe, const ModelConfig& config, BlockWeights& w, int expert,
    std::span<const LinearRole> roles, const Eigen::MatrixXd* hessian, const ExpertSource& source,
    const QuantizeProgress& progress, const MatrixRM* correction = nullptr);

// InputError naming the recipe field when a model with mixture-of-experts
// layers gets what ptq does not do to experts yet (compressed-tensors' mix of
// grids) or what no loader takes (bitsandbytes' format); or when a model
// without them is given an experts key. Checked by quantize and export.
void require_expert_support(const ModelConfig& config, const Recipe& recipe);

// Quantizes every expert of layer w.layer, expert by expert, and swaps in the
// dequantized weights. With `batches` (statistics: GPTQ, the refit) it then
// adds the quantized layer's output to the stream; without, it rounds with RTN.
std::vector<QuantizedLinear> quantize_experts(const Recipe& recipe, const ModelConfig& config,
                                              BlockWeights& w, const ExpertBatches* batches,
                                              const QuantizeProgress& progress);

}  // namespace ptq
