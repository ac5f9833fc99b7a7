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
// GPTQ onto uniform grids (natural order, dynamic groups or channels; the
// min/max or MSE-clipped range; toward the quantized inputs' or the float
// model's outputs; no refit or scaling) of dense Llama-family blocks.
// Those it cannot run go through quantize_blocks' CPU steps, with their dense
// kernels on the backend.
std::string device_path_refusal(const ModelConfig& config, const Recipe& recipe,
                                const QuantizeRunOptions& options);

// Device memory one device of the path holds for its share of `tokens`
// calibration tokens in batches of `batch_tokens` over `devices` devices (the
// windows go out in whole batches): its share of the stream
// (else spilled to host memory), the working set (one block's weights, the
// widest input's Hessian with GPTQ's factor beside it, one batch's
// temporaries), and, beside them when it fits (else computed again), the
// widest stage input kept for all its windows. The recipe target
// float_outputs (`float_target`) doubles the stream, the block and the kept
// input (the float model's beside the quantized one) and adds GPTAQ's
// statistics and correction to the working set.
struct DevicePathBytes {
  std::uint64_t stream = 0;
  std::uint64_t working = 0;
  std::uint64_t kept = 0;
};
DevicePathBytes device_path_bytes(const ModelConfig& config, std::int64_t tokens,
                                  std::int64_t batch_tokens, int devices, bool float_target);

// The device's float32 GEMM rate in the block's shapes and its math, GFLOP/s
// (a short probe).
double device_gflops(DeviceOps& ops);

// Data-parallel over the group's devices: each holds a copy of the block and
// a share of the windows (whole batches, in order); the Hessian sums are
// all-reduced, and each device rounds a share of every Linear's rows under
// the common factor, broadcast to the others after.
QuantizedLinears quantize_blocks_on_device(DeviceGroup& group, const Model& model,
                                           const Recipe& recipe, const CalibrationSet& calibration,
                                           const QuantizeRunOptions& options,
                                           const QuantizeProgress& progress);

}  // namespace ptq
