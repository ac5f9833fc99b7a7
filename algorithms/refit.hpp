#pragma once
// Refinement after quantization, grids or codes fixed.
//
// Scale refitting: with the codes and zero points fixed,
// each group's dequantized weights s_g (q_c - z_g) are linear in its scale s_g,
// so the scales of one row that minimise the layer's output error
//   (w - w')^T H (w - w'),   H the Hessian proxy (X^T X up to a factor)
// solve a small G x G linear system (G groups per row). GPTQ chooses a group's
// grid before the error feedback has moved the group's later weights, and
// clipping chooses it for the weights alone; this step refits all grids of a
// row jointly against the original W under H. It can only lower the objective:
// a row keeps its scales when the solve does not (or gives a scale <= 0).
#include <Eigen/Core>
#include <cstdint>

#include "algorithms/matrix.hpp"
#include "algorithms/quantized_matrix.hpp"

namespace ptq {

enum class ScaleRefit { None, LeastSquares };

// q: the quantization of W [out, in]; H: [in, in], symmetric positive
// semi-definite. Rows run in parallel; the result does not depend on the thread count.
void refit_scales(QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H);

// Coordinate descent on the codes, every grid fixed (QuantEase: Behdin et al.
// 2023, "QuantEase: Optimization-based Quantization for Language Models"). GPTQ
// rounds each column once, against the columns before it, and never returns to
// it; a sweep visits every column of a row in order and moves its weight to the
// level of its grid that minimises the row's output error (w - w')^T H (w - w')
// with all the row's other weights as they now are: the level nearest the
// parabola's vertex w'_c + (H (w - w'))_c / H_cc. A move is taken only when it
// lowers that error, so the error never rises; a row stops early when a sweep
// moves nothing. Columns with H_cc = 0 (never seen an input) and cells of scale
// 0 stay. Arguments as refit_scales; W is what the codes approximate (GPTAQ's
// target, with float_outputs). Returns how many codes moved. Rows run in
// parallel; the result does not depend on the thread count.
std::int64_t descend_codes(QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H,
                           int sweeps);

}  // namespace ptq
