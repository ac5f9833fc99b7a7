#pragma once
// Round-to-nearest quantization: every weight to the nearest point of its grid,
// the grid from the min/max of its tensor, row or group (reference Quantizer).
#include "algorithms/clip.hpp"
#include "algorithms/matrix.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

// W: [out, in], row-major float32, non-empty and finite (InputError otherwise, and for an
// invalid `spec`). Rows run in parallel (oneTBB); the result does not depend on
// the thread count. g_idx[c] = c / group_size (0 for Tensor and Channel).
// `clip` chooses each grid's range (clip.hpp); RTN has no Hessian, so its
// weighting is uniform.
QuantizedMatrix rtn_quantize(const MatrixRM& W, const QuantSpec& spec, const ClipConfig& clip = {});

// InputError unless W has elements and all are finite; `what` names W in the message.
void require_weights(const MatrixRM& W, const char* what);

}  // namespace ptq
