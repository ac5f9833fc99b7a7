#pragma once
// SmoothQuant scale migration (Xiao et al. 2023, eq. 4; mit-han-lab/smoothquant
// smooth.py, commit c61476d): for the Linears that read one normed input,
//   s[c] = max(act_absmax[c]^alpha / max(w_absmax[c], 1e-5)^(1-alpha), 1e-5)
// with w_absmax[c] the largest |W[:, c]| over the group's Linears. Dividing the
// preceding norm's weight by s and multiplying every W[:, c] by s leaves the
// float function unchanged and moves activation outliers into the weights.
// Search (smoothing_scales) and apply (fold_smoothing) are separate steps, so
// scales can be saved and replayed.
#include <Eigen/Core>
#include <span>

#include "algorithms/matrix.hpp"

namespace ptq {

struct SmoothQuantConfig {
  double alpha = 0.5;  // migration strength in [0, 1]: 0 keeps activations, 1 moves all to weights

  void validate() const;  // InputError naming "smoothquant.alpha"
};

inline constexpr float kSmoothMinScale = 1e-5f;  // the reference's clamps

// act_absmax: [in] max |x| per input channel of the float model. weights: the
// Linears reading that input, each [out, in]. Returns s: [in].
Eigen::VectorXf smoothing_scales(const Eigen::VectorXf& act_absmax, std::span<const MatrixRM* const> weights,
                                 const SmoothQuantConfig& config);

// norm /= s, every W[:, c] *= s[c], in place.
void fold_smoothing(const Eigen::VectorXf& s, Eigen::VectorXf& norm, std::span<MatrixRM* const> weights);

}  // namespace ptq
