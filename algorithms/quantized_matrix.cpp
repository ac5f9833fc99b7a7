#include "algorithms/quantized_matrix.hpp"

#include "io/error.hpp"

namespace ptq {

MatrixRM QuantizedMatrix::dequantize() const {
  MatrixRM out(codes.rows(), codes.cols());
  for (Eigen::Index r = 0; r < codes.rows(); ++r) {
    for (Eigen::Index c = 0; c < codes.cols(); ++c) {
      const GridParams<float> grid{scales(r, g_idx[c]), zeros(r, g_idx[c])};
      out(r, c) = dequantize_code(static_cast<float>(codes(r, c)), grid);
    }
  }
  return out;
}

double weight_mse(const MatrixRM& W, const MatrixRM& Q) {
  PTQ_ASSERT(W.rows() == Q.rows() && W.cols() == Q.cols());
  if (W.size() == 0) return 0.0;
  return (W.cast<double>() - Q.cast<double>()).squaredNorm() / static_cast<double>(W.size());
}

double output_error(const MatrixRM& W, const MatrixRM& Q, const Eigen::MatrixXd& H) {
  PTQ_ASSERT(W.rows() == Q.rows() && W.cols() == Q.cols());
  PTQ_ASSERT(H.rows() == W.cols() && H.cols() == W.cols());
  const Eigen::MatrixXd E = W.cast<double>() - Q.cast<double>();
  return (E * H).cwiseProduct(E).sum();
}

}  // namespace ptq
