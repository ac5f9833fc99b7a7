#include "scalar_reference.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace ptq::test {
namespace {

template <class T>
struct Grid {
  T scale;
  T zero;
};

// PROTOCOL.md: xmin = min(min w, 0), xmax = max(max w, 0); sym: xmax =
// max(|xmin|, xmax), xmin = -xmax where xmin < 0; both 0 -> [-1, 1];
// scale = (xmax - xmin) / maxq; zero = (maxq + 1) / 2 (sym) or round(-xmin / scale).
template <class T>
Grid<T> reference_grid(T lo, T hi, int bits, Symmetry symmetry) {
  const T maxq = static_cast<T>((1 << bits) - 1);
  T xmin = lo < 0 ? lo : T(0);
  T xmax = hi > 0 ? hi : T(0);
  if (symmetry == Symmetry::Symmetric) {
    xmax = std::fabs(xmin) > xmax ? std::fabs(xmin) : xmax;
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  Grid<T> g;
  g.scale = (xmax - xmin) / maxq;
  g.zero = symmetry == Symmetry::Symmetric ? (maxq + 1) / 2 : std::nearbyint(-xmin / g.scale);
  return g;
}

template <class T>
T reference_code(T w, const Grid<T>& g, int bits) {
  const T q = std::nearbyint(w / g.scale) + g.zero;
  return std::min<T>(std::max<T>(q, 0), static_cast<T>((1 << bits) - 1));
}

// min/max of row r over columns [begin, end) of a matrix.
template <class M>
std::pair<double, double> row_range(const M& A, int r, int begin, int end) {
  double lo = A(r, begin);
  double hi = A(r, begin);
  for (int c = begin; c < end; ++c) {
    lo = std::min<double>(lo, A(r, c));
    hi = std::max<double>(hi, A(r, c));
  }
  return {lo, hi};
}

int group_count(const QuantSpec& spec, int in) {
  return spec.granularity == Granularity::Group ? (in + spec.group_size - 1) / spec.group_size : 1;
}

// Grids of every (row, group) of A by the spec's granularity, in double.
void fit_reference_grids(const Eigen::MatrixXd& A, const QuantSpec& spec, Eigen::MatrixXd& scales,
                         Eigen::MatrixXd& zeros) {
  const int out = static_cast<int>(A.rows());
  const int in = static_cast<int>(A.cols());
  const int n_groups = group_count(spec, in);
  scales.resize(out, n_groups);
  zeros.resize(out, n_groups);
  for (int r = 0; r < out; ++r) {
    for (int g = 0; g < n_groups; ++g) {
      const int width = n_groups == 1 ? in : spec.group_size;
      auto [lo, hi] = row_range(A, r, g * width, std::min(in, (g + 1) * width));
      if (spec.granularity == Granularity::Tensor) {
        lo = A.minCoeff();
        hi = A.maxCoeff();
      }
      const auto grid = reference_grid<double>(lo, hi, spec.bits, spec.symmetry);
      scales(r, g) = grid.scale;
      zeros(r, g) = grid.zero;
    }
  }
}

}  // namespace

ReferenceResult rtn_reference(const MatrixRM& W, const QuantSpec& spec) {
  const int out = static_cast<int>(W.rows());
  const int in = static_cast<int>(W.cols());
  const int n_groups = group_count(spec, in);
  const int width = n_groups == 1 ? in : spec.group_size;
  ReferenceResult ref{Eigen::MatrixXi(out, in),       Eigen::MatrixXd(out, n_groups),
                      Eigen::MatrixXd(out, n_groups), Eigen::MatrixXd(out, in),
                      std::vector<std::int32_t>(in),  0.0};
  for (int r = 0; r < out; ++r) {
    for (int g = 0; g < n_groups; ++g) {
      float lo = W(r, g * width);
      float hi = lo;
      for (int c = g * width; c < std::min(in, (g + 1) * width); ++c) {
        lo = std::min(lo, W(r, c));
        hi = std::max(hi, W(r, c));
      }
      if (spec.granularity == Granularity::Tensor) {
        lo = W.minCoeff();
        hi = W.maxCoeff();
      }
      const Grid<float> grid = reference_grid<float>(lo, hi, spec.bits, spec.symmetry);
      ref.scales(r, g) = grid.scale;
      ref.zeros(r, g) = grid.zero;
      for (int c = g * width; c < std::min(in, (g + 1) * width); ++c) {
        const float q = reference_code(W(r, c), grid, spec.bits);
        ref.codes(r, c) = static_cast<int>(q);
        ref.Q(r, c) = grid.scale * (q - grid.zero);
        ref.g_idx[c] = g;
      }
    }
  }
  return ref;
}

ReferenceResult gptq_reference(const MatrixRM& W, const Eigen::MatrixXd& H_in,
                               const GptqConfig& config) {
  const QuantSpec& spec = config.spec;
  const int out = static_cast<int>(W.rows());
  const int in = static_cast<int>(W.cols());
  Eigen::MatrixXd Wd = W.cast<double>();
  Eigen::MatrixXd H = H_in;
  ReferenceResult ref;
  if (spec.granularity != Granularity::Group) fit_reference_grids(Wd, spec, ref.scales, ref.zeros);
  for (int i = 0; i < in; ++i) {
    if (H(i, i) == 0) {
      H(i, i) = 1;
      Wd.col(i).setZero();
    }
  }
  const bool dynamic_groups =
      spec.granularity == Granularity::Group && config.group_grids == GroupGrids::Dynamic;
  if (!dynamic_groups && spec.granularity == Granularity::Group) {
    fit_reference_grids(Wd, spec, ref.scales, ref.zeros);
  }
  std::vector<std::pair<double, int>> keyed(in);
  for (int i = 0; i < in; ++i) {
    const bool by_diag = config.order == ColumnOrder::ActivationOrder;
    keyed[i] = {by_diag ? -H(i, i) : 0.0, i};
  }
  std::sort(keyed.begin(), keyed.end());  // descending diag, ties by index
  Eigen::MatrixXd Hp(in, in), Wp(out, in);
  for (int a = 0; a < in; ++a) {
    Wp.col(a) = Wd.col(keyed[a].second);
    for (int b = 0; b < in; ++b) Hp(a, b) = H(keyed[a].second, keyed[b].second);
  }
  const double damping = config.damp * Hp.diagonal().mean();
  Hp.diagonal().array() += damping;
  const Eigen::MatrixXd Hinv = Hp.llt().solve(Eigen::MatrixXd::Identity(in, in));
  const Eigen::MatrixXd U = Hinv.llt().matrixU();

  ref.codes.resize(out, in);
  ref.Q.resize(out, in);
  ref.g_idx.assign(in, 0);
  if (dynamic_groups) {
    ref.scales.resize(out, group_count(spec, in));
    ref.zeros.resize(out, group_count(spec, in));
  }
  Eigen::MatrixXd block_start = Wp;
  for (int j = 0; j < in; ++j) {
    const int column = keyed[j].second;
    if (j % config.block_size == 0) block_start = Wp;
    int group = 0;
    if (spec.granularity == Granularity::Group) {
      group = (dynamic_groups ? j : column) / spec.group_size;
    }
    ref.g_idx[column] = group;
    for (int r = 0; r < out; ++r) {
      if (dynamic_groups && j % spec.group_size == 0) {
        const auto [lo, hi] = row_range(block_start, r, j, std::min(in, j + spec.group_size));
        const auto grid = reference_grid<double>(lo, hi, spec.bits, spec.symmetry);
        ref.scales(r, group) = grid.scale;
        ref.zeros(r, group) = grid.zero;
      }
      const Grid<double> grid{ref.scales(r, group), ref.zeros(r, group)};
      const double q = reference_code(Wp(r, j), grid, spec.bits);
      ref.codes(r, column) = static_cast<int>(q);
      ref.Q(r, column) = grid.scale * (q - grid.zero);
      const double err = (Wp(r, j) - ref.Q(r, column)) / U(j, j);
      ref.loss += err * err / 2;
      for (int k = j + 1; k < in; ++k) Wp(r, k) -= err * U(j, k);
    }
  }
  return ref;
}

ReferenceResult gptq_levels_reference(const MatrixRM& W, const Eigen::MatrixXd& H_in,
                                      const GptqConfig& config, const LevelGrid& grid) {
  const int out = static_cast<int>(W.rows()), in = static_cast<int>(W.cols());
  Eigen::MatrixXd Wd = W.cast<double>(), H = H_in;
  for (int i = 0; i < in; ++i) {
    if (H(i, i) != 0) continue;
    H(i, i) = 1;
    Wd.col(i).setZero();
  }
  std::vector<std::pair<double, int>> keyed(in);
  for (int i = 0; i < in; ++i)
    keyed[i] = {config.order == ColumnOrder::ActivationOrder ? -H(i, i) : 0.0, i};
  std::sort(keyed.begin(), keyed.end());
  Eigen::MatrixXd Hp(in, in), Wp(out, in);
  for (int a = 0; a < in; ++a) {
    Wp.col(a) = Wd.col(keyed[a].second);
    for (int b = 0; b < in; ++b) Hp(a, b) = H(keyed[a].second, keyed[b].second);
  }
  Hp.diagonal().array() += config.damp * Hp.diagonal().mean();
  const Eigen::MatrixXd Hinv = Hp.llt().solve(Eigen::MatrixXd::Identity(in, in));
  const Eigen::MatrixXd U = Hinv.llt().matrixU();
  ReferenceResult ref;
  ref.codes.resize(out, in);
  ref.Q.resize(out, in);
  for (int j = 0; j < in; ++j) {
    const int column = keyed[j].second, cell = column / grid.cell_width;
    for (int r = 0; r < out; ++r) {
      const double scale = grid.scale(r, cell), offset = grid.offset(r, cell);
      int best = 0;
      double best_distance = std::numeric_limits<double>::infinity();
      for (int k = 0; k < static_cast<int>(grid.levels.size()); ++k) {
        const double distance = std::abs(Wp(r, j) - (scale * grid.levels[k] + offset));
        if (distance < best_distance) best = k, best_distance = distance;
      }
      ref.codes(r, column) = best;
      ref.Q(r, column) = scale * grid.levels[best] + offset;
      const double err = (Wp(r, j) - ref.Q(r, column)) / U(j, j);
      ref.loss += err * err / 2;
      for (int k = j + 1; k < in; ++k) Wp(r, k) -= err * U(j, k);
    }
  }
  return ref;
}

MatrixRM random_weights(int out, int in, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  MatrixRM W(out, in);
  for (int r = 0; r < out; ++r) {
    for (int c = 0; c < in; ++c) W(r, c) = normal(rng);
  }
  std::uniform_int_distribution<int> row(0, out - 1), col(0, in - 1);
  for (int k = 0; k < out * in / 200 + 1; ++k) W(row(rng), col(rng)) *= 8.0f;  // outliers
  return W;
}

Eigen::MatrixXd correlated_hessian(int in, int samples, unsigned seed,
                                   const std::vector<int>& dead) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> spread(-1.0, 1.5);
  Eigen::MatrixXd A(in, in), Z(samples, in);
  for (int i = 0; i < in; ++i) {
    for (int j = 0; j < in; ++j) A(i, j) = normal(rng) / std::sqrt(in);
  }
  for (int i = 0; i < in; ++i) A(i, i) += std::pow(10.0, spread(rng));
  for (int s = 0; s < samples; ++s) {
    for (int i = 0; i < in; ++i) Z(s, i) = normal(rng);
  }
  Eigen::MatrixXd X = Z * A;
  for (int i : dead) X.col(i).setZero();
  return 2.0 / samples * X.transpose() * X;
}

}  // namespace ptq::test
