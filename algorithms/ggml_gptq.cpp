#include "algorithms/ggml_gptq.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "algorithms/ggml_round.hpp"
#include "io/error.hpp"

namespace ptq {

using ggml_detail::fp16_to_fp32;
using ggml_detail::fp32_to_fp16;

void GgmlGptqConfig::validate() const {
  gptq.validate();
  if (scales == GroupGrids::Dynamic && gptq.order != ColumnOrder::Natural)
    throw input_error("GgmlGptqConfig.scales",
                      "Static with act-order (a block's scales are "
                      "fitted when its first column comes up)",
                      "Dynamic");
}

namespace {

// The integer level of code 0 on a uniform grid (code i has level first + i).
int first_level(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q8_0:
      return -128;
    case GgmlGrid::q4_0:
      return -8;
    case GgmlGrid::q5_0:
      return -16;
    case GgmlGrid::q3_k:
      return -4;
    case GgmlGrid::q6_k:
      return -32;
    default:
      return 0;
  }
}

bool non_linear(GgmlGrid grid) { return grid == GgmlGrid::iq4_nl || grid == GgmlGrid::iq4_xs; }

// Q8_0 stores its code as the signed level; every other grid as the index.
int code_base(GgmlGrid grid) { return grid == GgmlGrid::q8_0 ? -128 : 0; }

int cell_width(const GgmlGridInfo& info) { return info.block_size / info.sub_blocks; }

// Sub-block scales stored with a bias (scale = value - 32).
int sub_scale_bias(GgmlGrid grid) {
  return grid == GgmlGrid::q3_k || grid == GgmlGrid::iq4_xs ? 32 : 0;
}

// Cell `s` (a sub-block, or a block where the type has none) as
// dequantize() computes it: w' = scale * level + offset.
void set_cell(const GgmlBlocks& q, std::int64_t s, float& scale, float& offset) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const std::int64_t block = s / info.sub_blocks;
  scale = fp16_to_fp32(q.d[block]);
  offset = 0.0f;
  if (info.sub_blocks > 1)
    scale = scale * static_cast<float>(q.sub_scales[s] - sub_scale_bias(q.grid));
  if (!info.has_min) return;
  offset = q.sub_mins.empty() ? fp16_to_fp32(q.dmin[block])
                              : -(fp16_to_fp32(q.dmin[block]) * static_cast<float>(q.sub_mins[s]));
}

// Copies the blocks of `part` (rows [r0, ...), columns from col0) into `q`
// and sets their cells in `g`.
void place_part(const GgmlBlocks& part, std::int64_t r0, std::int64_t col0, GgmlBlocks& q,
                LevelGrid& g) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const std::int64_t part_blocks = part.cols / info.block_size;
  const std::int64_t row_blocks = q.cols / info.block_size;
  for (std::int64_t r = 0; r < part.rows; ++r) {
    for (std::int64_t b = 0; b < part_blocks; ++b) {
      const std::int64_t from = r * part_blocks + b;
      const std::int64_t to = (r0 + r) * row_blocks + col0 / info.block_size + b;
      q.d[to] = part.d[from];
      if (info.has_min) q.dmin[to] = part.dmin[from];
      for (int j = 0; j < info.sub_blocks && info.sub_blocks > 1; ++j) {
        q.sub_scales[to * info.sub_blocks + j] = part.sub_scales[from * info.sub_blocks + j];
        if (info.has_min)
          q.sub_mins[to * info.sub_blocks + j] = part.sub_mins[from * info.sub_blocks + j];
      }
      for (int j = 0; j < info.sub_blocks; ++j) {
        const std::int64_t cell = to * info.sub_blocks + j;
        const std::int64_t cells_per_row = q.cols / cell_width(info);
        set_cell(q, cell, g.scale(cell / cells_per_row, cell % cells_per_row),
                 g.offset(cell / cells_per_row, cell % cells_per_row));
      }
    }
  }
}

std::vector<float> grid_levels(GgmlGrid grid) {
  if (non_linear(grid)) {
    const auto values = iq4nl_values();
    return {values.begin(), values.end()};
  }
  std::vector<float> levels(std::size_t{1} << ggml_grid_info(grid).bits);
  for (std::size_t i = 0; i < levels.size(); ++i)
    levels[i] = static_cast<float>(first_level(grid) + static_cast<int>(i));
  return levels;
}

// The integers a sub-block scale (after its bias) and a sub-block min may hold.
struct SubRange {
  int lo, hi;
};
SubRange sub_scale_range(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q2_k:
      return {0, 15};
    case GgmlGrid::q3_k:
    case GgmlGrid::iq4_xs:
      return {-32, 31};
    case GgmlGrid::q6_k:
      return {-128, 127};
    default:  // Q4_K, Q5_K
      return {0, 63};
  }
}
int sub_min_max(GgmlGrid grid) { return grid == GgmlGrid::q2_k ? 15 : 63; }

// The p minimizing (w - A p)^T H (w - A p), where A's column j is zero outside
// rows [(j / per) * width, + width), and that error's Hessian in p, M = A^T H A
// (plus the ridge): H A and M are built segment by segment. Solved for the step
// from p0 with a small ridge, so that a cell whose codes are all equal (its
// scale and offset columns parallel) stays where it was instead of drifting
// along the direction that changes nothing.
struct SegmentFit {
  Eigen::MatrixXd M;
  Eigen::VectorXd p;
};
SegmentFit fit_segments(const Eigen::MatrixXd& A, int per, int width, const Eigen::MatrixXd& H,
                        const Eigen::VectorXd& w, const Eigen::VectorXd& p0) {
  const Eigen::Index n = A.rows(), params = A.cols();
  Eigen::MatrixXd HA(n, params);
  for (Eigen::Index p = 0; p < params; ++p)
    HA.col(p) = H.middleCols((p / per) * width, width) * A.col(p).segment((p / per) * width, width);
  SegmentFit fit{Eigen::MatrixXd(params, params), {}};
  for (Eigen::Index p = 0; p < params; ++p)
    fit.M.row(p) = A.col(p).segment((p / per) * width, width).transpose() *
                   HA.middleRows((p / per) * width, width);
  fit.M.diagonal().array() += 1e-9 * std::max(fit.M.diagonal().maxCoeff(), 1e-30);
  fit.p = p0 + fit.M.ldlt().solve(HA.transpose() * (w - A * p0));
  return fit;
}

// Refits one row's stored scales under H with its codes fixed, three
// candidates, each kept only where it lowers (w - w')^T H (w - w') below the
// ones before it (rounding sub-block integers can cost more than freeing them
// gains): the row as it was; its blocks' d (and dmin) solved with the
// integers fixed and rounded to float16; and (with sub_blocks: k-quants,
// IQ4_XS) each sub-block's scale and offset solved as real numbers, rounded
// back to ggml's integers (per block, d and dmin so that the largest maps to
// the end of the range, then GPTQ-style rounding with feedback) and d refit.
class RowRefit {
 public:
  RowRefit(GgmlBlocks& q, const MatrixRM& W, const Eigen::MatrixXd& H, bool sub_blocks)
      : q_(q),
        W_(W),
        H_(H),
        info_(ggml_grid_info(q.grid)),
        levels_(grid_levels(q.grid)),
        sub_blocks_(sub_blocks && info_.sub_blocks > 1) {}

  void row(std::int64_t r) const {
    const Eigen::VectorXd w = W_.row(r).cast<double>().transpose();
    Saved best = save(r);
    double best_error = error(w, values(r));
    const auto keep_if_lower = [&] {
      const double e = error(w, values(r));
      if (e < best_error) {
        best = save(r);
        best_error = e;
      } else {
        restore(r, best);
      }
    };
    refit_blocks(r, w);
    keep_if_lower();
    if (!sub_blocks_) return;
    if (refit_cells(r, w)) refit_blocks(r, w);
    keep_if_lower();
  }

 private:
  std::int64_t row_blocks() const { return q_.cols / info_.block_size; }
  double level(std::int64_t r, std::int64_t c) const {
    return levels_[q_.codes[r * q_.cols + c] - code_base(q_.grid)];
  }

  // Each sub-block's w' = scale * level + offset, solved for scale and offset.
  bool refit_cells(std::int64_t r, const Eigen::VectorXd& w) const {
    const std::int64_t n = q_.cols, width = cell_width(info_), cells = n / width;
    const int per = info_.has_min ? 2 : 1;
    Eigen::MatrixXd A = Eigen::MatrixXd::Zero(n, cells * per);
    Eigen::VectorXd p0(cells * per);
    for (std::int64_t k = 0; k < cells; ++k) {
      float scale = 0, offset = 0;
      set_cell(q_, r * cells + k, scale, offset);
      p0[k * per] = scale;
      if (per == 2) p0[k * per + 1] = offset;
      for (std::int64_t c = k * width; c < (k + 1) * width; ++c) {
        A(c, k * per) = level(r, c);
        if (per == 2) A(c, k * per + 1) = 1.0;
      }
    }
    SegmentFit fit = fit_segments(A, per, static_cast<int>(width), H_, w, p0);
    if (!fit.p.allFinite()) return false;
    std::vector<double> step(fit.p.size());  // each value's integer step
    for (std::int64_t b = 0; b < row_blocks(); ++b)
      if (!set_block_steps(r * row_blocks() + b, fit.p, b, per, step)) return false;
    return round_cells(r, fit, per, step);
  }

  // Sets block b's (of its row) d and dmin, in float16, so that the largest of
  // its sub-block scales and mins in p map to the ends of ggml's integer
  // ranges; step: each value's d, or -dmin for an offset. False where there is
  // no such d (no positive scale on an unsigned grid).
  bool set_block_steps(std::int64_t block, const Eigen::VectorXd& p, std::int64_t b, int per,
                       std::vector<double>& step) const {
    const int sub = info_.sub_blocks;
    const SubRange range = sub_scale_range(q_.grid);
    double extreme = 0, largest_min = 0;
    for (int j = 0; j < sub; ++j) {
      const double s = p[(b * sub + j) * per];
      if (std::abs(s) > std::abs(extreme)) extreme = s;
      if (per == 2) largest_min = std::max(largest_min, -p[(b * sub + j) * per + 1]);
    }
    if (extreme == 0 || (extreme < 0 && range.lo == 0)) return false;
    q_.d[block] = fp32_to_fp16(static_cast<float>(extreme / (extreme > 0 ? range.hi : range.lo)));
    if (per == 2)
      q_.dmin[block] = fp32_to_fp16(static_cast<float>(largest_min / sub_min_max(q_.grid)));
    for (int j = 0; j < sub; ++j) {
      step[(b * sub + j) * per] = fp16_to_fp32(q_.d[block]);
      if (per == 2) step[(b * sub + j) * per + 1] = -fp16_to_fp32(q_.dmin[block]);
    }
    return true;
  }

  // Rounds the row's sub-block scales and mins to their integers one by one,
  // GPTQ's way in p: each rounding error is fed back to the values not yet
  // rounded through M's inverse, so they absorb what it cost.
  bool round_cells(std::int64_t r, SegmentFit& fit, int per, const std::vector<double>& step) const {
    const Eigen::LLT<Eigen::MatrixXd> inverse(
        fit.M.ldlt().solve(Eigen::MatrixXd::Identity(fit.M.rows(), fit.M.cols())));
    if (inverse.info() != Eigen::Success) return false;
    const Eigen::MatrixXd U = inverse.matrixU();
    const SubRange range = sub_scale_range(q_.grid);
    const std::int64_t first_cell = r * (q_.cols / cell_width(info_));
    Eigen::VectorXd& p = fit.p;
    for (Eigen::Index j = 0; j < p.size(); ++j) {
      const bool is_min = per == 2 && j % 2 == 1;
      const double lo = is_min ? 0 : range.lo, hi = is_min ? sub_min_max(q_.grid) : range.hi;
      const double level = step[j] == 0 ? 0 : std::clamp(std::nearbyint(p[j] / step[j]), lo, hi);
      const std::int64_t cell = first_cell + j / per;
      if (is_min) q_.sub_mins[cell] = static_cast<std::int8_t>(level);
      else q_.sub_scales[cell] = static_cast<std::int8_t>(level + sub_scale_bias(q_.grid));
      const double error = (p[j] - level * step[j]) / U(j, j);
      p.tail(p.size() - j - 1) -= error * U.row(j).tail(p.size() - j - 1).transpose();
    }
    return true;
  }

  // Per block: w' = d * u + dmin * v on the block's columns, u the sub-block
  // integer scale times the level, v 1 or minus the sub-block's integer min.
  void refit_blocks(std::int64_t r, const Eigen::VectorXd& w) const {
    const std::int64_t n = q_.cols, blocks = row_blocks(), width = cell_width(info_);
    const int per = info_.has_min ? 2 : 1;
    Eigen::MatrixXd A = Eigen::MatrixXd::Zero(n, blocks * per);
    Eigen::VectorXd p0(blocks * per);
    for (std::int64_t c = 0; c < n; ++c) {
      const std::int64_t cell = (r * n + c) / width, p = (c / info_.block_size) * per;
      const double sub = info_.sub_blocks > 1 ? q_.sub_scales[cell] - sub_scale_bias(q_.grid) : 1;
      A(c, p) = sub * level(r, c);
      if (per == 2) A(c, p + 1) = q_.sub_mins.empty() ? 1.0 : -static_cast<double>(q_.sub_mins[cell]);
    }
    for (std::int64_t b = 0; b < blocks; ++b) {
      p0[b * per] = fp16_to_fp32(q_.d[r * blocks + b]);
      if (per == 2) p0[b * per + 1] = fp16_to_fp32(q_.dmin[r * blocks + b]);
    }
    const Eigen::VectorXd p = fit_segments(A, per, info_.block_size, H_, w, p0).p;
    if (!p.allFinite()) return;
    for (std::int64_t b = 0; b < blocks; ++b) {
      q_.d[r * blocks + b] = fp32_to_fp16(static_cast<float>(p[b * per]));
      if (per == 2) q_.dmin[r * blocks + b] = fp32_to_fp16(static_cast<float>(p[b * per + 1]));
    }
  }

  // The row's w' as ggml dequantizes it.
  Eigen::VectorXd values(std::int64_t r) const {
    const std::int64_t n = q_.cols, width = cell_width(info_);
    Eigen::VectorXd v(n);
    for (std::int64_t k = 0; k < n / width; ++k) {
      float scale = 0, offset = 0;
      set_cell(q_, r * (n / width) + k, scale, offset);
      for (std::int64_t c = k * width; c < (k + 1) * width; ++c)
        v[c] = static_cast<float>(scale * static_cast<float>(level(r, c)) + offset);
    }
    return v;
  }

  double error(const Eigen::VectorXd& w, const Eigen::VectorXd& fit) const {
    const Eigen::VectorXd e = w - fit;
    return e.dot(H_ * e);
  }

  // One row's stored scales: its blocks' d and dmin, its sub-blocks' integers.
  struct Saved {
    std::vector<std::uint16_t> d, dmin;
    std::vector<std::int8_t> sub_scales, sub_mins;
  };
  template <class T>
  static std::vector<T> slice(const std::vector<T>& v, std::int64_t first, std::int64_t count) {
    if (v.empty()) return {};
    return {v.begin() + first, v.begin() + first + count};
  }
  template <class T>
  static void put(const std::vector<T>& from, std::vector<T>& to, std::int64_t first) {
    std::copy(from.begin(), from.end(), to.begin() + first);
  }
  Saved save(std::int64_t r) const {  // slice() leaves out a grid's empty vectors
    const std::int64_t blocks = row_blocks(), cells = blocks * info_.sub_blocks;
    return {slice(q_.d, r * blocks, blocks), slice(q_.dmin, r * blocks, blocks),
            slice(q_.sub_scales, r * cells, cells), slice(q_.sub_mins, r * cells, cells)};
  }
  void restore(std::int64_t r, const Saved& s) const {
    const std::int64_t blocks = row_blocks(), cells = blocks * info_.sub_blocks;
    put(s.d, q_.d, r * blocks);
    put(s.dmin, q_.dmin, r * blocks);
    put(s.sub_scales, q_.sub_scales, r * cells);
    put(s.sub_mins, q_.sub_mins, r * cells);
  }

  GgmlBlocks& q_;
  const MatrixRM& W_;
  const Eigen::MatrixXd& H_;
  const GgmlGridInfo& info_;
  std::vector<float> levels_;
  bool sub_blocks_;
};

LevelGrid empty_level_grid(GgmlGrid grid, std::int64_t rows, std::int64_t cols) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  LevelGrid g;
  g.levels = grid_levels(grid);
  g.consecutive = !non_linear(grid);
  g.cell_width = cell_width(info);
  g.scale = MatrixRM::Zero(rows, cols / g.cell_width);
  g.offset = MatrixRM::Zero(rows, cols / g.cell_width);
  return g;
}

}  // namespace

LevelGrid ggml_level_grid(const GgmlBlocks& q) {
  LevelGrid g = empty_level_grid(q.grid, q.rows, q.cols);
  for (Eigen::Index r = 0; r < g.scale.rows(); ++r)
    for (Eigen::Index k = 0; k < g.scale.cols(); ++k)
      set_cell(q, r * g.scale.cols() + k, g.scale(r, k), g.offset(r, k));
  return g;
}

GgmlGptqResult ggml_gptq(GgmlGrid grid, const MatrixRM& W, const Eigen::MatrixXd& H,
                         const GptqHessian& hessian, const GgmlGptqConfig& config) {
  config.validate();
  const GgmlGridInfo& info = ggml_grid_info(grid);
  if (W.cols() % info.block_size != 0)
    throw input_error("ggml_gptq: W",
                      "columns in whole " + std::string(info.name) + " blocks of " +
                          std::to_string(info.block_size),
                      std::to_string(W.cols()) + " columns");
  std::vector<float> importance(hessian.diag.size());
  for (std::size_t c = 0; c < importance.size(); ++c)
    importance[c] = static_cast<float>(hessian.diag[static_cast<Eigen::Index>(c)]);
  MatrixRM live = W;  // GPTQ zeroes dead columns; the search sees them zeroed too
  for (Eigen::Index c = 0; c < W.cols(); ++c)
    if (hessian.dead[c]) live.col(c).setZero();
  GgmlGptqResult result{make_ggml_blocks(grid, W.rows(), W.cols()), 0};
  LevelGrid g = empty_level_grid(grid, W.rows(), W.cols());
  const auto fit_part = [&](Eigen::Index r0, Eigen::Index col0, const MatrixRM& part,
                            LevelGrid& cells) {
    const std::span<const float> weights(importance.data() + col0, part.cols());
    place_part(ggml_quantize(grid, part, weights), r0, col0, result.blocks, cells);
  };
  if (config.scales == GroupGrids::Static) {
    fit_part(0, 0, live, g);
  } else {
    g.fit_width = std::max(info.block_size, 32);  // Q8_0 .. Q5_1: 32-weight blocks
    g.fit = fit_part;
  }
  LevelGptqResult rounded = gptq_quantize_levels(W, hessian, config.gptq, g);
  result.loss = rounded.loss;
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index c = 0; c < W.cols(); ++c)
      result.blocks.codes[r * W.cols() + c] =
          static_cast<std::int8_t>(rounded.codes(r, c) + code_base(grid));
  if (config.refit != GgmlRefit::None) {
    const RowRefit rows(result.blocks, live, H, config.refit == GgmlRefit::SubBlockScales);
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, W.rows()), [&](const auto& range) {
      for (std::int64_t r = range.begin(); r < range.end(); ++r) rows.row(r);
    });
  }
  return result;
}

}  // namespace ptq
