#include "algorithms/ggml_gptq.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <algorithm>
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

// Per row: w' = sum over blocks of d_b * u + dmin_b * v on the block's
// columns, u = the sub-block scale times the level (times -1 for a k-quant
// min's v = -m). Solves min (w - w')^T H (w - w') for the d (and dmin) of the
// row's blocks, rounds them to float16 and keeps them where that lowers the
// error. Codes and sub-block scales stay.
class BlockRefit {
 public:
  BlockRefit(GgmlBlocks& q, const MatrixRM& W, const Eigen::MatrixXd& H)
      : q_(q), W_(W), H_(H), info_(ggml_grid_info(q.grid)) {}

  void row(std::int64_t r) const {
    const std::int64_t n = q_.cols, blocks = n / info_.block_size;
    const int per = info_.has_min ? 2 : 1, bs = info_.block_size;
    Eigen::MatrixXd A = Eigen::MatrixXd::Zero(n, blocks * per);  // w' = A p
    fill_design(r, A);
    // A's column p is zero outside its block: H A and A^T H A block by block.
    Eigen::MatrixXd HA(n, A.cols());
    for (Eigen::Index p = 0; p < A.cols(); ++p)
      HA.col(p) = H_.middleCols((p / per) * bs, bs) * A.col(p).segment((p / per) * bs, bs);
    Eigen::MatrixXd M(A.cols(), A.cols());
    for (Eigen::Index p = 0; p < A.cols(); ++p)
      M.row(p) =
          A.col(p).segment((p / per) * bs, bs).transpose() * HA.middleRows((p / per) * bs, bs);
    M.diagonal().array() += 1e-12 * std::max(M.diagonal().maxCoeff(), 1e-30);
    const Eigen::VectorXd w = W_.row(r).cast<double>().transpose();
    const Eigen::VectorXd p = M.ldlt().solve(HA.transpose() * w);
    if (!p.allFinite()) return;
    Eigen::VectorXd stored(p.size());
    for (Eigen::Index i = 0; i < p.size(); ++i)
      stored[i] = fp16_to_fp32(fp32_to_fp16(static_cast<float>(p[i])));
    if (error(w, A * stored) >= error(w, A * current(r, blocks, per))) return;
    for (std::int64_t b = 0; b < blocks; ++b) {
      q_.d[r * blocks + b] = fp32_to_fp16(static_cast<float>(stored[b * per]));
      if (per == 2) q_.dmin[r * blocks + b] = fp32_to_fp16(static_cast<float>(stored[b * per + 1]));
    }
  }

 private:
  void fill_design(std::int64_t r, Eigen::MatrixXd& A) const {
    const std::int64_t n = q_.cols, blocks = n / info_.block_size;
    const int per = info_.has_min ? 2 : 1, width = cell_width(info_);
    const std::vector<float> levels = grid_levels(q_.grid);
    for (std::int64_t c = 0; c < n; ++c) {
      const std::int64_t block = r * blocks + c / info_.block_size;
      const std::int64_t cell = (r * n + c) / width;
      const double sub = info_.sub_blocks > 1 ? q_.sub_scales[cell] - sub_scale_bias(q_.grid) : 1;
      const double level = levels[q_.codes[r * n + c] - code_base(q_.grid)];
      const Eigen::Index p = (block - r * blocks) * per;
      A(c, p) = sub * level;
      if (per == 2)
        A(c, p + 1) = q_.sub_mins.empty() ? 1.0 : -static_cast<double>(q_.sub_mins[cell]);
    }
  }

  Eigen::VectorXd current(std::int64_t r, std::int64_t blocks, int per) const {
    Eigen::VectorXd p(blocks * per);
    for (std::int64_t b = 0; b < blocks; ++b) {
      p[b * per] = fp16_to_fp32(q_.d[r * blocks + b]);
      if (per == 2) p[b * per + 1] = fp16_to_fp32(q_.dmin[r * blocks + b]);
    }
    return p;
  }

  double error(const Eigen::VectorXd& w, const Eigen::VectorXd& fit) const {
    const Eigen::VectorXd e = w - fit;
    return e.dot(H_ * e);
  }

  GgmlBlocks& q_;
  const MatrixRM& W_;
  const Eigen::MatrixXd& H_;
  const GgmlGridInfo& info_;
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
  if (config.refit) {
    const BlockRefit refit(result.blocks, live, H);
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, W.rows()), [&](const auto& range) {
      for (std::int64_t r = range.begin(); r < range.end(); ++r) refit.row(r);
    });
  }
  return result;
}

}  // namespace ptq
