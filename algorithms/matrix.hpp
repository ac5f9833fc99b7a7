#pragma once
// Dense matrix types shared by the algorithms.
#include <Eigen/Core>

namespace ptq {

// A weight matrix W: [out, in], row-major, float32 (one row per output channel).
using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A float32 vector: per-channel scales, norm weights, biases.
using VectorF = Eigen::VectorXf;

}  // namespace ptq
