#pragma once
// The result of quantizing one weight matrix, and error metrics.
#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/quant_grid.hpp"

namespace ptq {

using CodeMatrix = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct QuantizedMatrix {
  QuantSpec spec;
  CodeMatrix codes;                 // [out, in], row-major, each in [0, spec.maxq()]
  MatrixRM scales;                  // [out, n_groups]
  MatrixRM zeros;                   // [out, n_groups], integer-valued
  std::vector<std::int32_t> g_idx;  // [in]: the group (column of scales/zeros) of each input

  int rows() const { return static_cast<int>(codes.rows()); }
  int columns() const { return static_cast<int>(codes.cols()); }
  // W'[r, c] = scales[r, g] * (codes[r, c] - zeros[r, g]) with g = g_idx[c], in float32.
  MatrixRM dequantize() const;
};

// Mean of (W - Q)^2 over all elements, accumulated in double.
double weight_mse(const MatrixRM& W, const MatrixRM& Q);

// Output-space error tr((W - Q) H (W - Q)^T): the layer's squared output error
// summed over the calibration inputs that H = X^T X was built from (in H's scaling).
double output_error(const MatrixRM& W, const MatrixRM& Q, const Eigen::MatrixXd& H);

}  // namespace ptq
