#pragma once
// GPTQ with everything on the device (algorithms/device.hpp, docs/gpu.md):
// the calibration stream, each stage's activations, the Hessians, GPTQ's
// factor and column loop. The host reads each block's weights (the next one
// while the device works on this one) and receives the codes. Same steps as
// quantize_blocks' true-sequential GPTQ (quantize.cpp), on device arrays.
#include <string>

#include "algorithms/device.hpp"
#include "pipeline/quantize/quantize.hpp"

namespace ptq {

// Why the device path cannot run this recipe on this model ("" when it can):
// plain GPTQ onto uniform grids (natural order, dynamic groups or channels,
// no clipping, refit, scaling or float target) of dense Llama-family blocks.
// Those it cannot run go through quantize_blocks' CPU steps, with their dense
// kernels on the backend.
std::string device_path_refusal(const ModelConfig& config, const Recipe& recipe,
                                const QuantizeRunOptions& options);

// Device memory the path holds at its peak for a run of `tokens` calibration
// tokens in batches of `batch_tokens`: the stream, the widest stage input
// kept for all windows, one block's weights, the widest input's Hessian with
// GPTQ's factor beside it, and one batch's temporaries.
std::uint64_t device_path_bytes(const ModelConfig& config, std::int64_t tokens,
                                std::int64_t batch_tokens);

// The device's float32 GEMM rate in the block's shapes and its math, GFLOP/s
// (a short probe).
double device_gflops(DeviceOps& ops);

QuantizedLinears quantize_blocks_on_device(DeviceOps& ops, const Model& model, const Recipe& recipe,
                                           const CalibrationSet& calibration,
                                           const QuantizeRunOptions& options,
                                           const QuantizeProgress& progress);

}  // namespace ptq
