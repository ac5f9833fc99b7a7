#pragma once
// One decoder block on a device (algorithms/device.hpp): its weights uploaded
// once, and the stages block.hpp computes on the CPU (sublayer_normed,
// sublayer_inner, add_sublayer_output) run on device-resident activations.
// The GPU path of GPTQ (pipeline/quantize/quantize_device.cpp) is built on it.
#include <array>
#include <string>

#include "algorithms/device.hpp"
#include "calibrate/block.hpp"

namespace ptq {

class DeviceBlock {
 public:
  // Why layer `layer` of `config` cannot run on the device ("" when it can):
  // the Llama family's blocks (q/k norms and biases included) can; mixtures,
  // Gemma's output norms, soft-capping and sliding windows cannot yet.
  static std::string unsupported(const ModelConfig& config, int layer);

  // Uploads w's Linears, biases and norms, and the RoPE tables for windows of seq_len.
  DeviceBlock(DeviceOps& ops, const ModelConfig& config, const BlockWeights& w, int seq_len);

  DeviceMatrix& weight(LinearRole role) { return weight_[static_cast<std::size_t>(role)]; }
  // The stream x [tokens, hidden] normed by the sublayer's norm.
  DeviceMatrix normed(const SublayerSpec& sublayer, const DeviceMatrix& x) const;
  // The attention context or the MLP's gated hidden state of the normed stream.
  DeviceMatrix inner(Sublayer sublayer, const DeviceMatrix& normed) const;
  // x += in W_out^T + b: the sublayer's residual add.
  void add_output(const SublayerSpec& sublayer, const DeviceMatrix& in, DeviceMatrix& x) const;

 private:
  DeviceMatrix project(const DeviceMatrix& x, LinearRole role) const;
  DeviceMatrix attention(const DeviceMatrix& normed) const;
  DeviceMatrix mlp(const DeviceMatrix& normed) const;

  DeviceOps& ops_;
  const ModelConfig& c_;
  int seq_len_;
  std::array<DeviceMatrix, linear_role_count> weight_, bias_;
  DeviceMatrix input_norm_, post_attention_norm_, q_norm_, k_norm_, cos_, sin_;
};

}  // namespace ptq
