#pragma once
// Uniform integer grids as in the reference Quantizer (IST-DASLab/gptq quant.py,
// see shared/fixtures/PROTOCOL.md "Reference quantizers"): a grid is a scale and
// an integer-valued zero point; a weight w maps to the code
//   q = clamp(round(w / scale) + zero, 0, maxq)     (round half to even)
// and back to scale * (q - zero). ggml's Q4_1/Q5_1 blocks (RangeRule::GgmlMin)
// are the one exception: their offset m is any float16, so zero = -m / scale is
// not an integer and the code rounds w / scale + zero as a whole. The math runs in T (float32 like
// torch, or double for reference checks) in the reference's operation order.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "algorithms/ggml_round.hpp"

namespace ptq {

enum class Symmetry { Symmetric, Asymmetric };

// Which weights share one grid: the whole tensor, one output channel (row), or
// `group_size` consecutive input columns of one row.
enum class Granularity { Tensor, Channel, Group };

// The range a grid covers: IncludeZero widens [min, max] to contain 0 (the
// GPTQ Quantizer); MinMax spans exactly [min, max] of the weights and clamps the
// zero point into the code range (llm-awq pseudo_quantize_tensor; asymmetric only).
// Ggml is the scale rule of ggml's legacy symmetric blocks (ggml-quants.c
// quantize_row_q4_0_ref / q5_0 / q8_0), so GPTQ can round onto the exact grid
// llama.cpp stores: groups of 32, zero 2^(bits-1), scale d stored as float16;
// 4 and 5 bits: d = (the value of largest magnitude, with its sign) / -2^(bits-1);
// 8 bits: d = max |w| / 127. Symmetric, group 32, bits 4, 5 or 8 only.
// GgmlMin is ggml's legacy asymmetric blocks (quantize_row_q4_1_ref / q5_1):
// groups of 32 spanning exactly [min, max], d = (max - min) / maxq and m = min,
// both stored as float16; w' = d * q + m. Asymmetric, group 32, bits 4 or 5.
enum class RangeRule { IncludeZero, MinMax, Ggml, GgmlMin };

// How the output stores a grid's scale: float32 (quantized.h5, the dequantized
// folder) or float16 (GPTQ checkpoints of float16 models). Grids are fitted
// with the stored scale, so codes are chosen against the scale a loader reads.
// ggml's grids store float16 whatever this says.
enum class ScaleStorage { f32, f16 };

// Whether a rule is one of ggml's (its scale rule is fixed: no clipping).
constexpr bool ggml_range(RangeRule r) { return r == RangeRule::Ggml || r == RangeRule::GgmlMin; }

struct QuantSpec {
  int bits = 4;  // 2..8; codes lie in [0, 2^bits - 1]
  Symmetry symmetry = Symmetry::Asymmetric;
  Granularity granularity = Granularity::Channel;
  int group_size = 128;  // input columns per group; used only with Granularity::Group
  RangeRule range = RangeRule::IncludeZero;
  ScaleStorage scale_storage = ScaleStorage::f32;

  // Throws InputError naming the offending field.
  void validate() const;

  bool operator==(const QuantSpec&) const = default;
  int maxq() const { return (1 << bits) - 1; }
  // Grids per row for a matrix of `columns` inputs; a last partial group counts.
  int groups_per_row(int columns) const;
};

template <class T>
struct GridParams {
  T scale;
  T zero;  // integer-valued but on RangeRule::GgmlMin grids
};

// Whether codes round w / scale + zero as a whole (a GgmlMin grid's offset).
template <class T>
bool offset_zero(const GridParams<T>& grid) {
  return grid.zero != std::nearbyint(grid.zero);
}

// A scale as `storage` keeps it: float16 rounds to nearest even, and a scale
// below float16's range becomes its smallest subnormal (never 0).
template <class T>
T stored_scale(T scale, ScaleStorage storage) {
  if (storage == ScaleStorage::f32) return scale;
  constexpr T kSmallestHalf = T(0x1p-24);
  const auto half = static_cast<T>(
      ggml_detail::fp16_to_fp32(ggml_detail::fp32_to_fp16(static_cast<float>(scale))));
  return half == T(0) ? kSmallestHalf : half;
}

// The grid for weights whose minimum is `lo` and maximum `hi` (Quantizer.find_params):
// the range always includes 0; symmetric grids are centred at (maxq + 1) / 2; an
// all-zero range becomes [-1, 1] so the scale is never 0.
template <class T>
GridParams<T> grid_from_range(T lo, T hi, int maxq, Symmetry symmetry,
                              ScaleStorage storage = ScaleStorage::f32) {
  T xmin = std::min(lo, T(0));
  T xmax = std::max(hi, T(0));
  if (symmetry == Symmetry::Symmetric) {
    xmax = std::max(std::abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  const T scale = stored_scale((xmax - xmin) / static_cast<T>(maxq), storage);
  const T zero = symmetry == Symmetry::Symmetric ? static_cast<T>(maxq + 1) / T(2)
                                                 : std::nearbyint(-xmin / scale);
  return {scale, zero};
}

// llm-awq's grid of weights spanning [lo, hi]: scale = max(hi - lo, 1e-5) / maxq,
// zero = clamp(-round(lo / scale), 0, maxq). The range need not contain 0.
template <class T>
GridParams<T> grid_from_min_max(T lo, T hi, int maxq, ScaleStorage storage = ScaleStorage::f32) {
  constexpr T min_span = T(1e-5);  // pseudo_quantize_tensor's clamp(min=1e-5)
  const T scale = stored_scale(std::max(hi - lo, min_span) / static_cast<T>(maxq), storage);
  const T zero = std::clamp(-std::nearbyint(lo / scale), T(0), static_cast<T>(maxq));
  return {scale, zero};
}

// ggml's legacy symmetric grid (RangeRule::Ggml) of weights spanning [lo, hi].
// An all-zero range gives scale 0 (every code then is the zero point), as ggml.
template <class T>
GridParams<T> grid_from_ggml(T lo, T hi, int bits) {
  const T zero = static_cast<T>(1 << (bits - 1));
  constexpr T kQ8Levels = 127;  // quantize_row_q8_0_ref: d = amax / ((1 << 7) - 1)
  const T d = bits == 8 ? std::max(std::abs(lo), std::abs(hi)) / kQ8Levels
                        : (std::abs(lo) > std::abs(hi) ? lo : hi) / -zero;
  const T stored =
      static_cast<T>(ggml_detail::fp16_to_fp32(ggml_detail::fp32_to_fp16(static_cast<float>(d))));
  return {stored, zero};
}

// ggml's legacy asymmetric grid (RangeRule::GgmlMin) of weights spanning
// [lo, hi]: scale d and zero -m / d from the float16 d and m ggml stores. When d
// rounds to 0 every weight is m: scale m and zero -1 keep code 0 at m (an
// all-zero group gets scale 0 and code 0).
template <class T>
GridParams<T> grid_from_ggml_min(T lo, T hi, int maxq) {
  const auto half = [](T v) {
    return static_cast<T>(
        ggml_detail::fp16_to_fp32(ggml_detail::fp32_to_fp16(static_cast<float>(v))));
  };
  const T d = half((hi - lo) / static_cast<T>(maxq));
  const T m = half(lo);
  if (d == T(0)) return {m, m == T(0) ? T(0) : T(-1)};
  return {d, -m / d};
}

// The grid `spec` gives weights spanning [lo, hi] (by spec.range).
template <class T>
GridParams<T> grid_for_spec(T lo, T hi, const QuantSpec& spec) {
  if (spec.range == RangeRule::MinMax)
    return grid_from_min_max<T>(lo, hi, spec.maxq(), spec.scale_storage);
  if (spec.range == RangeRule::Ggml) return grid_from_ggml<T>(lo, hi, spec.bits);
  if (spec.range == RangeRule::GgmlMin) return grid_from_ggml_min<T>(lo, hi, spec.maxq());
  return grid_from_range<T>(lo, hi, spec.maxq(), spec.symmetry, spec.scale_storage);
}

// The grid of a range of values (any iterable of T).
template <class T, class Range>
GridParams<T> grid_from_values(const Range& values, int maxq, Symmetry symmetry) {
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  return grid_from_range<T>(*lo, *hi, maxq, symmetry);
}

// Code of one weight; std::nearbyint rounds half to even under the default
// rounding mode, like torch.round.
// A zero scale (RangeRule::Ggml's all-zero group) maps every weight to the zero point.
template <class T>
T quantize_code(T w, const GridParams<T>& grid, int maxq) {
  if (grid.scale == T(0)) return grid.zero;
  const T x = w / grid.scale;
  const T code = offset_zero(grid) ? std::nearbyint(x + grid.zero) : std::nearbyint(x) + grid.zero;
  return std::clamp(code, T(0), static_cast<T>(maxq));
}

template <class T>
T dequantize_code(T code, const GridParams<T>& grid) {
  return grid.scale * (code - grid.zero);
}

// Grids of a whole matrix W [out, in], one per (row, group): [out, n_groups].
template <class T>
struct GridTable {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> scales;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zeros;

  GridParams<T> at(Eigen::Index row, Eigen::Index group) const {
    return {scales(row, group), zeros(row, group)};
  }
};

// The grids `spec` gives W (not empty): Tensor, one min/max over all of W (copied to every
// row); Channel, per row; Group, per row and run of group_size columns.
template <class Derived>
GridTable<typename Derived::Scalar> fit_grids(const Eigen::MatrixBase<Derived>& W,
                                              const QuantSpec& spec) {
  using T = typename Derived::Scalar;
  const auto columns = static_cast<int>(W.cols());
  const int n_groups = spec.groups_per_row(columns);
  GridTable<T> table{decltype(GridTable<T>::scales)(W.rows(), n_groups),
                     decltype(GridTable<T>::zeros)(W.rows(), n_groups)};
  const auto fill = [&](Eigen::Index row, int group, T lo, T hi) {
    const GridParams<T> grid = grid_for_spec<T>(lo, hi, spec);
    table.scales(row, group) = grid.scale;
    table.zeros(row, group) = grid.zero;
  };
  if (spec.granularity == Granularity::Tensor) {
    const T lo = W.minCoeff();
    const T hi = W.maxCoeff();
    for (Eigen::Index r = 0; r < W.rows(); ++r) fill(r, 0, lo, hi);
    return table;
  }
  const int width = spec.granularity == Granularity::Group ? spec.group_size : columns;
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    for (int g = 0; g < n_groups; ++g) {
      const int begin = g * width;
      const auto part = W.row(r).segment(begin, std::min(width, columns - begin));
      fill(r, g, part.minCoeff(), part.maxCoeff());
    }
  }
  return table;
}

}  // namespace ptq
