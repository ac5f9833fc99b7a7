#pragma once
// Drivers of the methods whose weights need no error feedback between Linears:
//  - W8A8 (SmoothQuant, shared/fixtures/PROTOCOL.md): the calibration windows run
//    through the FLOAT blocks, as in the reference; per block, the per-channel absmax
//    of each normed input gives the SmoothQuant scales (folded into the norms and
//    the q/k/v and gate/up columns), the smoothed block's inputs give the static
//    activation scales (tensor granularity), and every Linear is rounded to int8
//    per output channel. o and down are not smoothed (as the reference for Llama).
//  - NF4: every Linear blockwise to NormalFloat-4 with double-quantized absmax.
#include "pipeline/quantize.hpp"
#include "pipeline/quantized_output.hpp"

namespace ptq {

struct MethodOutput {
  std::vector<QuantizedLinear> linears;
  ModelExtras extras;  // smoothed norms, activation scheme, smoothing scales
};

// `calibration` may be null when recipe.needs_calibration() is false (naive, per token).
MethodOutput quantize_w8a8(const Model& model, const Recipe& recipe, const CalibrationSet* calibration,
                           int batch_windows, const QuantizeProgress& progress = {});

std::vector<QuantizedLinear> quantize_nf4(const Model& model, const Recipe& recipe,
                                          const QuantizeProgress& progress = {});

}  // namespace ptq
