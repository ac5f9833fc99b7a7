#pragma once
// Weight clipping for the uniform grids of quant_grid.hpp: instead of spanning
// [min, max] of its weights, a grid spans a shrunk range [p lo, p hi] chosen
// to lower the quantization error. Outliers then saturate at the grid's ends
// while every other weight gets a finer step.
//   Mse: p from the grid 1, 1 - 1/steps, ..., down to 1 - max_shrink, the one
//     minimising sum_c d_c |w_c - Q_p(w_c)|^norm (the search of the GPTQ
//     repository's Quantizer with mse=True; d_c = 1, or an importance such as
//     diag(H)_c = E[x_c^2], as in AWQ's auto_clip which weighs by the inputs).
//     p = 1 is always a candidate, so the objective never exceeds min/max's.
//   Percentile: hi is the order statistic floor(percentile (n - 1)) of the n
//     weights and lo the same counted from the top.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "algorithms/quant_grid.hpp"

namespace ptq {

enum class ClipMethod { None, Mse, Percentile };

// Which d_c weigh the Mse objective.
enum class ClipWeighting {
  Uniform,  // d_c = 1
  Hessian   // d_c = diag(H)_c, the mean square input of column c (uniform without H)
};

struct ClipConfig {
  ClipMethod method = ClipMethod::None;
  int steps = 100;          // Mse: p = 1 - k / steps (Quantizer grid=100)
  double max_shrink = 0.8;  // Mse: k < max_shrink * steps (Quantizer maxshrink=.8)
  double norm = 2.4;        // Mse: error exponent (Quantizer norm=2.4)
  ClipWeighting weighting = ClipWeighting::Uniform;
  double percentile = 0.999;  // Percentile: hi quantile in (0.5, 1]; lo = 1 - percentile

  void validate() const;  // InputError naming the field
};

namespace clip_detail {

template <class T, class W, class D>
T grid_error(const W& w, const D& importance, const GridParams<T>& grid, int maxq, double norm) {
  T total = 0;
  for (Eigen::Index c = 0; c < w.size(); ++c) {
    const T e = std::abs(w[c] - dequantize_code(quantize_code(w[c], grid, maxq), grid));
    // norm 2 is common and std::pow is slow.
    const T p = norm == 2.0 ? e * e : static_cast<T>(std::pow(e, static_cast<T>(norm)));
    total += importance.size() == 0 ? p : static_cast<T>(importance[c]) * p;
  }
  return total;
}

// The k-th smallest of w (0-based).
template <class T, class W>
T order_statistic(const W& w, std::ptrdiff_t k) {
  std::vector<T> v(w.begin(), w.end());
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

}  // namespace clip_detail

// The grid of the weights `w` (a non-empty vector expression) under `clip`.
// `importance` holds one d_c per weight, or is empty (then d_c = 1).
template <class T, class W, class D>
GridParams<T> clipped_grid(const W& w, const D& importance, const QuantSpec& spec,
                           const ClipConfig& clip) {
  const T lo = w.minCoeff();
  const T hi = w.maxCoeff();
  if (clip.method == ClipMethod::None) return grid_for_spec<T>(lo, hi, spec);
  const int maxq = spec.maxq();
  const Symmetry symmetry = spec.symmetry;
  if (clip.method == ClipMethod::Percentile) {
    // k-th largest and k-th smallest, symmetric by construction.
    const auto last = static_cast<std::ptrdiff_t>(w.size()) - 1;
    const auto k =
        static_cast<std::ptrdiff_t>(std::floor(clip.percentile * static_cast<double>(last)));
    return grid_from_range<T>(clip_detail::order_statistic<T>(w, last - k),
                              clip_detail::order_statistic<T>(w, k), maxq, symmetry,
                              spec.scale_storage);
  }
  GridParams<T> best = grid_from_range<T>(lo, hi, maxq, symmetry, spec.scale_storage);
  T best_error = clip_detail::grid_error(w, importance, best, maxq, clip.norm);
  const int candidates = static_cast<int>(clip.max_shrink * clip.steps);
  for (int k = 1; k < candidates; ++k) {
    const T p = T(1) - static_cast<T>(k) / static_cast<T>(clip.steps);
    const GridParams<T> grid =
        grid_from_range<T>(p * lo, p * hi, maxq, symmetry, spec.scale_storage);
    const T error = clip_detail::grid_error(w, importance, grid, maxq, clip.norm);
    if (error < best_error) {  // strict: ties keep the wider range
      best_error = error;
      best = grid;
    }
  }
  return best;
}

// fit_grids (quant_grid.hpp) under `clip`: W [out, in]; `importance` holds one
// d_c per input column, or is empty. Channel and Group granularity only when
// clip.method != None (a Tensor grid is one choice for all rows).
template <class Derived>
GridTable<typename Derived::Scalar> fit_clipped_grids(
    const Eigen::MatrixBase<Derived>& W, const QuantSpec& spec, const ClipConfig& clip,
    const Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, 1>& importance) {
  using T = typename Derived::Scalar;
  if (clip.method == ClipMethod::None) return fit_grids(W, spec);
  const auto columns = static_cast<int>(W.cols());
  const int n_groups = spec.groups_per_row(columns);
  const int width = spec.granularity == Granularity::Group ? spec.group_size : columns;
  GridTable<T> table{decltype(GridTable<T>::scales)(W.rows(), n_groups),
                     decltype(GridTable<T>::zeros)(W.rows(), n_groups)};
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    for (int g = 0; g < n_groups; ++g) {
      const int begin = g * width;
      const int size = std::min(width, columns - begin);
      const auto d =
          importance.size() == 0 ? importance.segment(0, 0) : importance.segment(begin, size);
      const GridParams<T> grid = clipped_grid<T>(W.row(r).segment(begin, size), d, spec, clip);
      table.scales(r, g) = grid.scale;
      table.zeros(r, g) = grid.zero;
    }
  }
  return table;
}

// InputError unless clipping applies to `spec` (not Tensor granularity).
void require_clip_applies(const ClipConfig& clip, const QuantSpec& spec, const char* where);

}  // namespace ptq
