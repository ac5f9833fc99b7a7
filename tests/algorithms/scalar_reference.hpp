#pragma once
// Independent scalar references for the quantizers, written from the text of
// shared/fixtures/PROTOCOL.md "Reference quantizers" and the GPTQ paper, with
// no code shared with algorithms/: a plain RTN loop, and unblocked GPTQ in
// double (each column's error applied at once to every later column), plus
// seeded synthetic data.
#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "algorithms/gptq.hpp"

namespace ptq::test {

struct ReferenceResult {
  Eigen::MatrixXi codes;   // [out, in], original column order
  Eigen::MatrixXd scales;  // [out, n_groups]
  Eigen::MatrixXd zeros;
  Eigen::MatrixXd Q;  // dequantized, original column order
  std::vector<std::int32_t> g_idx;
  double loss = 0;
};

// RTN in float32, element by element.
ReferenceResult rtn_reference(const MatrixRM& W, const QuantSpec& spec);

// GPTQ in double without lazy blocks. config.block_size only sets when the
// reference's dynamic group ranges are read (from the weights as they stood at
// the start of the block), as fasterquant does.
ReferenceResult gptq_reference(const MatrixRM& W, const Eigen::MatrixXd& H,
                               const GptqConfig& config);

// GPTQ onto a fixed LevelGrid (no fit) in double without lazy blocks: each
// weight to the level nearest it (ties to the lower), the error applied at
// once to every later column.
ReferenceResult gptq_levels_reference(const MatrixRM& W, const Eigen::MatrixXd& H,
                                      const GptqConfig& config, const LevelGrid& grid);

// Weights ~ N(0, 0.02^2) with a few large outliers, like trained linear layers.
MatrixRM random_weights(int out, int in, unsigned seed);

// 2/n X^T X for n samples of `in` correlated features with unequal variances
// (X = Z A, Z standard normal, A = diag(s) + dense mixing). Features listed in
// `dead` are always 0.
Eigen::MatrixXd correlated_hessian(int in, int samples, unsigned seed,
                                   const std::vector<int>& dead = {});

}  // namespace ptq::test
