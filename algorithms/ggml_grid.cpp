#include "algorithms/ggml_grid.hpp"

#include <array>
#include <cmath>
#include <string>

#include "algorithms/ggml_families.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// ggml's block sizes (QK4_0 = QK8_0 = 32, QK_K = 256; ggml-common.h).
constexpr std::array<GgmlGridInfo, 12> kGrids = {{
    {GgmlGrid::q8_0, "Q8_0", 32, 1, false, 8},
    {GgmlGrid::q4_0, "Q4_0", 32, 1, false, 4},
    {GgmlGrid::q4_1, "Q4_1", 32, 1, true, 4},
    {GgmlGrid::q5_0, "Q5_0", 32, 1, false, 5},
    {GgmlGrid::q5_1, "Q5_1", 32, 1, true, 5},
    {GgmlGrid::q2_k, "Q2_K", 256, 16, true, 2},
    {GgmlGrid::q3_k, "Q3_K", 256, 16, false, 3},
    {GgmlGrid::q4_k, "Q4_K", 256, 8, true, 4},
    {GgmlGrid::q5_k, "Q5_K", 256, 8, true, 5},
    {GgmlGrid::q6_k, "Q6_K", 256, 16, false, 6},
    {GgmlGrid::iq4_nl, "IQ4_NL", 32, 1, false, 4},
    {GgmlGrid::iq4_xs, "IQ4_XS", 256, 8, false, 4},
}};

enum class Family { legacy, kquant, iq4 };

Family family_of(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q2_k:
    case GgmlGrid::q3_k:
    case GgmlGrid::q4_k:
    case GgmlGrid::q5_k:
    case GgmlGrid::q6_k:
      return Family::kquant;
    case GgmlGrid::iq4_nl:
    case GgmlGrid::iq4_xs:
      return Family::iq4;
    default:
      return Family::legacy;
  }
}

}  // namespace

std::span<const GgmlGridInfo> ggml_grids() { return kGrids; }

const GgmlGridInfo& ggml_grid_info(GgmlGrid grid) {
  const auto& info = kGrids[static_cast<std::size_t>(grid)];
  PTQ_ASSERT(info.grid == grid);
  return info;
}

GgmlBlocks make_ggml_blocks(GgmlGrid grid, std::int64_t rows, std::int64_t cols) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  GgmlBlocks q;
  q.grid = grid;
  q.rows = rows;
  q.cols = cols;
  const std::int64_t blocks = q.blocks();
  q.d.assign(blocks, 0);
  if (info.has_min) q.dmin.assign(blocks, 0);
  if (info.sub_blocks > 1) {
    q.sub_scales.assign(blocks * info.sub_blocks, 0);
    if (info.has_min) q.sub_mins.assign(blocks * info.sub_blocks, 0);
  }
  q.codes.assign(rows * cols, 0);
  return q;
}

std::int64_t GgmlBlocks::blocks() const { return rows * cols / ggml_grid_info(grid).block_size; }

GgmlBlocks ggml_quantize(GgmlGrid grid, const MatrixRM& W, std::span<const float> importance) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  const std::string where = std::string(info.name) + " quantization";
  if (W.cols() % info.block_size != 0) {
    throw input_error(where, "a row length that is a multiple of " + std::to_string(info.block_size),
                      std::to_string(W.cols()));
  }
  if (!importance.empty() && static_cast<std::int64_t>(importance.size()) != W.cols()) {
    throw input_error(where + " importance", std::to_string(W.cols()) + " values (one per column)",
                      std::to_string(importance.size()));
  }
  if (!W.allFinite()) throw input_error(where, "finite weights", "NaN or Inf");
  GgmlBlocks q = make_ggml_blocks(grid, W.rows(), W.cols());
  switch (family_of(grid)) {
    case Family::legacy: ggml_detail::quantize_legacy(W, importance, q); break;
    case Family::kquant: ggml_detail::quantize_kquant(W, importance, q); break;
    case Family::iq4: ggml_detail::quantize_iq4(W, importance, q); break;
  }
  return q;
}

MatrixRM dequantize(const GgmlBlocks& q) {
  MatrixRM W(q.rows, q.cols);
  switch (family_of(q.grid)) {
    case Family::legacy: ggml_detail::dequantize_legacy(q, W); break;
    case Family::kquant: ggml_detail::dequantize_kquant(q, W); break;
    case Family::iq4: ggml_detail::dequantize_iq4(q, W); break;
  }
  return W;
}

}  // namespace ptq
