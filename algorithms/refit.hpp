#pragma once
// Scale refitting after quantization: with the codes and zero points fixed,
// each group's dequantized weights s_g (q_c - z_g) are linear in its scale s_g,
// so the scales of one row that minimise the layer's output error
//   (w - w')^T H (w - w'),   H the Hessian proxy (X^T X up to a factor)
// solve a small G x G linear system (G groups per row). GPTQ chooses a group's
// grid before the error feedback has moved the group's later weights, and
// clipping chooses it for the weights alone; this step refits all grids of a
// row jointly against the original W under H. It can only lower the objective:
// a row keeps its scales when the solve does not (or gives a scale <= 0).
#include <Eigen/Core>

#include "algorithms/matrix.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

enum class ScaleRefit { None, LeastSquares };

// q: the quantization of W [out, in]; H: [in, in], symmetric positive
// semi-definite. Rows run in parallel; the result does not depend on the thread count.
void refit_scales(QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H);

}  // namespace ptq
