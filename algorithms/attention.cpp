#include "algorithms/attention.hpp"

#include <cblas.h>
#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "algorithms/backend.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

// Query rows per score tile. Tiles only compute the columns up to their last
// row, so the causal mask wastes ~1/(2 * seq_len/tile) of the work instead of half.
constexpr int query_tile = 128;

// Softmax of a tile row whose columns are keys k0..k0+cols-1: keys before
// `first_key` and after `last_key` are masked to probability 0; the live
// scores are soft-capped first when softcap > 0.
void masked_softmax_row(float* row, int k0, int cols, int first_key, int last_key, float softcap) {
  // Eigen's packet exp and tanh: several times faster than scalar loops.
  Eigen::Map<Eigen::ArrayXf> live(row + (first_key - k0), last_key - first_key + 1);
  if (softcap > 0) live = (live * (1.0f / softcap)).tanh() * softcap;
  live = (live - live.maxCoeff()).exp();
  live *= 1.0f / live.sum();
  std::fill(row, row + (first_key - k0), 0.0f);
  std::fill(row + (last_key - k0) + 1, row + cols, 0.0f);
}

// The first key query `r` sees.
int first_key(const AttentionShape& s, int r) {
  return s.window > 0 ? std::max(0, r - s.window + 1) : 0;
}

// One (sequence, head) pair: tiles of query rows, each a GEMM for scores, a
// masked softmax and a GEMM with V. Called with OpenBLAS single-threaded.
void attend_one_head(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                     const AttentionShape& s, int seq, int head, std::vector<float>& scores,
                     MatrixRM& out) {
  const int kv_head = head / (s.heads / s.kv_heads);
  const int ldq = static_cast<int>(q.cols()), ldk = static_cast<int>(k.cols());
  const float scale = score_scale(s);
  const std::size_t row0 = static_cast<std::size_t>(seq) * s.seq_len;
  const float* qh = q.data() + row0 * ldq + head * s.head_dim;
  const float* kh = k.data() + row0 * ldk + kv_head * s.head_dim;
  const float* vh = v.data() + row0 * ldk + kv_head * s.head_dim;
  float* oh = out.data() + row0 * ldq + head * s.head_dim;
  scores.resize(static_cast<std::size_t>(query_tile) * s.seq_len);
  for (int r0 = 0; r0 < s.seq_len; r0 += query_tile) {
    const int rows = std::min(query_tile, s.seq_len - r0);
    // Keys k0..k0+cols-1 are visible to some row of this tile.
    const int k0 = first_key(s, r0), cols = r0 + rows - k0;
    const std::size_t key0 = static_cast<std::size_t>(k0) * ldk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, s.head_dim, scale,
                qh + static_cast<std::size_t>(r0) * ldq, ldq, kh + key0, ldk, 0.0f, scores.data(),
                cols);
    for (int r = r0; r < r0 + rows; ++r) {
      masked_softmax_row(scores.data() + static_cast<std::size_t>(r - r0) * cols, k0, cols,
                         first_key(s, r), r, s.softcap);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, s.head_dim, cols, 1.0f,
                scores.data(), cols, vh + key0, ldk, 0.0f, oh + static_cast<std::size_t>(r0) * ldq,
                ldq);
  }
}

void check_shapes(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                  const AttentionShape& s) {
  PTQ_ASSERT(s.seq_len > 0 && s.kv_heads > 0 && s.heads % s.kv_heads == 0);
  PTQ_ASSERT(q.rows() % s.seq_len == 0 && k.rows() == q.rows() && v.rows() == q.rows());
  PTQ_ASSERT(q.cols() == s.heads * s.head_dim && k.cols() == s.kv_heads * s.head_dim &&
             v.cols() == k.cols());
}

}  // namespace

void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                      const AttentionShape& s, MatrixRM& out) {
  check_shapes(q, k, v, s);
  out.resize(q.rows(), q.cols());
  if (MatrixBackend* backend = active_backend()) return backend->causal_attention(q, k, v, s, out);
  const int sequences = static_cast<int>(q.rows() / s.seq_len);
  tbb::enumerable_thread_specific<std::vector<float>> scratch;
  // Many small GEMMs, each single-threaded BLAS (the policy of
  // algorithms/parallel_gemm.hpp), parallel over (sequence, head).
  use_single_threaded_blas();
  tbb::parallel_for(0, sequences * s.heads, [&](int task) {
    attend_one_head(q, k, v, s, task / s.heads, task % s.heads, scratch.local(), out);
  });
}

void causal_attention_reference(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                const AttentionShape& s, MatrixRM& out) {
  check_shapes(q, k, v, s);
  out.setZero(q.rows(), q.cols());
  const int group = s.heads / s.kv_heads;
  std::vector<double> p(static_cast<std::size_t>(s.seq_len));
  const double scale = s.scale > 0 ? s.scale : 1.0 / std::sqrt(double(s.head_dim));
  for (Eigen::Index t = 0; t < q.rows(); ++t) {
    const Eigen::Index start = t - t % s.seq_len;
    const Eigen::Index first = s.window > 0 ? std::max(start, t - s.window + 1) : start;
    for (int h = 0; h < s.heads; ++h) {
      const int qc = h * s.head_dim, kc = (h / group) * s.head_dim;
      double peak = -INFINITY, sum = 0.0;
      for (Eigen::Index j = first; j <= t; ++j) {
        double dot = 0.0;
        for (int d = 0; d < s.head_dim; ++d) dot += double(q(t, qc + d)) * k(j, kc + d);
        double score = dot * scale;
        if (s.softcap > 0) score = std::tanh(score / s.softcap) * s.softcap;
        p[j - first] = score;
        peak = std::max(peak, p[j - first]);
      }
      for (Eigen::Index j = first; j <= t; ++j) sum += p[j - first] = std::exp(p[j - first] - peak);
      for (int d = 0; d < s.head_dim; ++d) {
        double acc = 0.0;
        for (Eigen::Index j = first; j <= t; ++j) acc += p[j - first] / sum * v(j, kc + d);
        out(t, qc + d) = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace ptq
