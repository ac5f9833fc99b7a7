#pragma once
// Symmetric int8 fake quantization, the W8A8 scheme of SmoothQuant
// (mit-han-lab/smoothquant fake_quant.py; shared/fixtures/PROTOCOL.md):
//   scale = max(absmax, 1e-5) / 127,   x' = round(x / scale) * scale
// with round half to even, in float32. Weights: one scale per output channel
// (row of W). Activations: one scale per token (row of X, dynamic) or one per
// tensor (static, from calibration statistics; values beyond it saturate).
#include "algorithms/matrix.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

inline constexpr float kInt8Max = 127.0f;
inline constexpr float kInt8MinAbsmax = 1e-5f;  // the reference's clamp: no zero scales
// Codes are stored as unsigned bytes: code = q + 128, q in [-127, 127].
inline constexpr float kInt8Zero = 128.0f;

// The scale of a range of magnitude `absmax`.
float int8_scale(float absmax);

// W: [out, in], non-empty and finite (InputError otherwise). One symmetric grid
// per row: spec {8 bits, symmetric, channel}, zeros = 128, so that
// dequantize() = scale * round(w / scale) exactly as the reference computes it.
QuantizedMatrix int8_quantize_rows(const MatrixRM& W);

// Per-token dynamic: every row of x by its own absmax, in place.
void fake_quant_int8_rows(MatrixRM& x);

// Per-tensor static: all of x with one scale, clamped to [-127, 127] codes, in place.
void fake_quant_int8_tensor(MatrixRM& x, float scale);

}  // namespace ptq
