#include "algorithms/refit.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// Relative ridge added to the system's diagonal, pulling towards the current
// scales: keeps a group whose codes all equal its zero (a zero column of the
// system) at its scale, far below any data term.
constexpr double kRidge = 1e-9;

struct RowSystem {
  Eigen::MatrixXd M;    // [G, G]: v_g^T H v_h
  Eigen::VectorXd rhs;  // [G]: v_g^T H w
};

// v_c = q_c - z_{g(c)} for every input column c (rows of the result), per row (columns).
Eigen::MatrixXd centred_codes(const QuantizedMatrix& q) {
  Eigen::MatrixXd V(q.columns(), q.rows());
  for (int r = 0; r < q.rows(); ++r)
    for (int c = 0; c < q.columns(); ++c) V(c, r) = q.codes(r, c) - q.zeros(r, q.g_idx[c]);
  return V;
}

double objective(const RowSystem& sys, const Eigen::VectorXd& s) {
  return s.dot(sys.M * s) - 2 * s.dot(sys.rhs);  // up to the constant w^T H w
}

void check_shapes(const char* what, const QuantizedMatrix& q, const MatrixRM& W,
                  const Eigen::MatrixXd& H) {
  const Eigen::Index n = W.cols();
  if (W.rows() != q.rows() || n != q.columns() || H.rows() != n || H.cols() != n) {
    throw input_error(what, "W, codes [out, in] and H [in, in] that agree",
                      "W [" + std::to_string(W.rows()) + ", " + std::to_string(n) + "], codes [" +
                          std::to_string(q.rows()) + ", " + std::to_string(q.columns()) + "], H [" +
                          std::to_string(H.rows()) + ", " + std::to_string(H.cols()) + "]");
  }
}

// One row's sweeps (descend_codes): e = w - w' and g = H e are kept current
// as codes move; a move of the weight by d lowers e_c by d, so g by d H[:, c],
// and changes the error by d (d H_cc - 2 g_c).
std::int64_t descend_row(QuantizedMatrix& q, Eigen::Index r, const MatrixRM& W,
                         const Eigen::MatrixXd& H, int sweeps) {
  const Eigen::Index n = W.cols();
  auto grid = [&](Eigen::Index c) {
    return GridParams<float>{q.scales(r, q.g_idx[c]), q.zeros(r, q.g_idx[c])};
  };
  Eigen::VectorXd e(n);
  for (Eigen::Index c = 0; c < n; ++c)
    e[c] = double(W(r, c)) - dequantize_code(float(q.codes(r, c)), grid(c));
  Eigen::VectorXd g = H * e;
  std::int64_t moved = 0;
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    const std::int64_t before = moved;
    for (Eigen::Index c = 0; c < n; ++c) {
      const double h = H(c, c);
      const GridParams<float> cell = grid(c);
      if (!(h > 0) || cell.scale == 0) continue;
      const float now = dequantize_code(float(q.codes(r, c)), cell);
      const auto vertex = static_cast<float>(now + g[c] / h);
      if (!std::isfinite(vertex)) continue;
      const float code = quantize_code(vertex, cell, q.spec.maxq());
      const double d = double(dequantize_code(code, cell)) - now;
      if (code == q.codes(r, c) || !(d * (d * h - 2 * g[c]) < 0)) continue;
      q.codes(r, c) = static_cast<std::uint8_t>(code);
      g.noalias() -= d * H.col(c);
      ++moved;
    }
    if (moved == before) break;
  }
  return moved;
}

}  // namespace

std::int64_t descend_codes(QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H,
                           int sweeps) {
  check_shapes("descend_codes", q, W, H);
  use_single_threaded_blas();
  std::atomic<std::int64_t> moved{0};
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, W.rows()), [&](const auto& rows) {
    std::int64_t here = 0;
    for (Eigen::Index r = rows.begin(); r < rows.end(); ++r)
      here += descend_row(q, r, W, H, sweeps);
    moved += here;
  });
  return moved;
}

void refit_scales(QuantizedMatrix& q, const MatrixRM& W, const Eigen::MatrixXd& H) {
  const Eigen::Index n = W.cols();
  check_shapes("refit_scales", q, W, H);
  use_single_threaded_blas();
  const auto G = q.scales.cols();
  std::vector<std::vector<Eigen::Index>> members(G);
  for (Eigen::Index c = 0; c < n; ++c) members[q.g_idx[c]].push_back(c);
  const Eigen::MatrixXd V = centred_codes(q);
  const Eigen::MatrixXd HW = H * W.transpose().cast<double>();  // [in, out]
  // HV[g] = H[:, C_g] V[C_g, :]: H times each row's group-g part of v.
  std::vector<Eigen::MatrixXd> HV(G);
  for (Eigen::Index g = 0; g < G; ++g)
    HV[g] = H(Eigen::all, members[g]) * V(members[g], Eigen::all);
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, W.rows()), [&](const auto& rows) {
    for (Eigen::Index r = rows.begin(); r < rows.end(); ++r) {
      RowSystem sys{Eigen::MatrixXd(G, G), Eigen::VectorXd(G)};
      for (Eigen::Index g = 0; g < G; ++g) {
        const auto v = V(members[g], r);
        sys.rhs[g] = v.dot(HW(members[g], r));
        for (Eigen::Index h = 0; h < G; ++h) sys.M(g, h) = v.dot(HV[h](members[g], r));
      }
      const Eigen::VectorXd s0 = q.scales.row(r).transpose().cast<double>();
      const double lambda = kRidge * (sys.M.trace() / static_cast<double>(G) + 1e-30);
      Eigen::MatrixXd A = sys.M;
      A.diagonal().array() += lambda;
      Eigen::VectorXd s = A.ldlt().solve(sys.rhs + lambda * s0);
      for (double& v : s) v = stored_scale(v, q.spec.scale_storage);  // a loader reads these
      if (s.allFinite() && (s.array() > 0).all() && objective(sys, s) < objective(sys, s0))
        q.scales.row(r) = s.transpose().cast<float>();
    }
  });
}

}  // namespace ptq
