#pragma once
// Helpers the GPU tests share: random operands and the relative difference
// they bound.
#include <random>

#include "algorithms/matrix.hpp"

namespace ptq::test {

inline MatrixRM random_matrix(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MatrixRM m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(gen);
  return m;
}

// max |x - y| / max |y|.
template <class A, class B>
double rel_diff(const A& x, const B& y) {
  return (x.template cast<double>() - y.template cast<double>()).cwiseAbs().maxCoeff() /
         y.template cast<double>().cwiseAbs().maxCoeff();
}

}  // namespace ptq::test
