#pragma once
// Drivers of the methods whose weights need no error feedback between Linears:
//  - W8A8 (SmoothQuant, shared/fixtures/PROTOCOL.md): the calibration windows run
//    through the FLOAT blocks, as in the reference; per block, the per-channel absmax
//    of each normed input gives the SmoothQuant scales (pipeline/smoothing.hpp;
//    or replayed ones), the smoothed block's inputs give the static activation
//    scales (tensor granularity), and every Linear is rounded to int8 per output
//    channel.
//  - NF4: every Linear blockwise to NormalFloat-4 with double-quantized absmax.
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/output/quantized_output.hpp"

namespace ptq {

struct MethodOutput {
  QuantizedLinears linears;
  ModelExtras
      extras;  // activation scheme, smoothing scales (as AwqBlocks: folded_tensors gives the norms)
};

// `calibration` may be null when no activations are needed (naive per token, or
// SmoothQuant scales replayed from `replay`, one block per layer, with per-token
// activations).
MethodOutput quantize_w8a8(const Model& model, const Recipe& recipe, const CalibrationSet* calibration,
                           int batch_windows, const std::vector<BlockScales>* replay = nullptr,
                           const QuantizeProgress& progress = {});

std::vector<QuantizedLinear> quantize_nf4(const Model& model, const Recipe& recipe,
                                          const QuantizeProgress& progress = {});

}  // namespace ptq
