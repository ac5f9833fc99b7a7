#include "algorithms/quantized_weight.hpp"

#include <string>

#include "algorithms/ggml_round.hpp"
#include "io/error.hpp"

namespace ptq {

MatrixRM dequantize(const QuantizedWeight& q) {
  return std::visit(
      [](const auto& m) -> MatrixRM {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, GgmlBlocks>)
          return dequantize(m);
        else
          return m.dequantize();
      },
      q);
}

std::optional<QuantSpec> ggml_uniform_spec(GgmlGrid grid) {
  QuantSpec spec;
  spec.symmetry = Symmetry::Symmetric;
  spec.granularity = Granularity::Group;
  spec.group_size = 32;
  spec.range = RangeRule::Ggml;
  switch (grid) {
    case GgmlGrid::q4_0:
      spec.bits = 4;
      return spec;
    case GgmlGrid::q5_0:
      spec.bits = 5;
      return spec;
    case GgmlGrid::q8_0:
      spec.bits = 8;
      return spec;
    case GgmlGrid::q4_1:
    case GgmlGrid::q5_1:
      spec.bits = grid == GgmlGrid::q4_1 ? 4 : 5;
      spec.symmetry = Symmetry::Asymmetric;
      spec.range = RangeRule::GgmlMin;
      return spec;
    default:
      return std::nullopt;
  }
}

namespace {

// The blocks of a grid whose groups of `width` columns (a multiple of the
// block size) each span whole blocks: every block gets its group's scale.
GgmlBlocks blocks_of(const QuantizedMatrix& m, GgmlGrid grid, int width) {
  const int bits = ggml_uniform_spec(grid)->bits, block = ggml_grid_info(grid).block_size;
  GgmlBlocks q = make_ggml_blocks(grid, m.rows(), m.columns());
  const int offset = 1 << (bits - 1);
  const int blocks_per_row = m.columns() / block;
  for (int r = 0; r < m.rows(); ++r) {
    for (int b = 0; b < blocks_per_row; ++b) {
      const int g = b * block / width;
      q.d[r * blocks_per_row + b] = ggml_detail::fp32_to_fp16(m.scales(r, g));
      // Q4_1/Q5_1's m = -zero * d: float16 within a float rounding, so exactly it again.
      if (!q.dmin.empty())
        q.dmin[r * blocks_per_row + b] = ggml_detail::fp32_to_fp16(-m.zeros(r, g) * m.scales(r, g));
    }
    for (int c = 0; c < m.columns(); ++c) {
      // Q8_0 stores signed codes, Q4_0/Q5_0 the unsigned ones.
      const int code = m.codes(r, c) - (grid == GgmlGrid::q8_0 ? offset : 0);
      q.codes[static_cast<std::size_t>(r) * m.columns() + c] = static_cast<std::int8_t>(code);
    }
  }
  return q;
}

}  // namespace

GgmlBlocks to_ggml_blocks(const QuantizedMatrix& m, GgmlGrid grid) {
  const std::optional<QuantSpec> spec = ggml_uniform_spec(grid);
  PTQ_ASSERT(spec && m.spec == *spec);
  for (int c = 0; c < m.columns(); ++c)
    if (m.g_idx[c] != c / spec->group_size)
      throw input_error(std::string(ggml_grid_info(grid).name) + " blocks",
                        "column c in group c / 32 (act-order only with static groups)",
                        "column " + std::to_string(c) + " in group " + std::to_string(m.g_idx[c]));
  return blocks_of(m, grid, spec->group_size);
}

std::optional<GgmlBlocks> exact_ggml_blocks(const QuantizedMatrix& m, GgmlGrid grid) {
  const std::optional<QuantSpec> want = ggml_uniform_spec(grid);
  if (!want) return std::nullopt;
  if (m.spec == *want) return to_ggml_blocks(m, grid);
  // Otherwise only the symmetric grids, whose blocks store no zero.
  const int block = ggml_grid_info(grid).block_size;
  const int width = m.spec.granularity == Granularity::Group ? m.spec.group_size : m.columns();
  if (want->symmetry != Symmetry::Symmetric || m.spec.bits != want->bits ||
      m.spec.granularity == Granularity::Tensor || width % block != 0 || m.columns() % block != 0 ||
      (m.zeros.array() != float(1 << (want->bits - 1))).any())
    return std::nullopt;
  for (int c = 0; c < m.columns(); ++c)
    if (m.g_idx[c] != c / width) return std::nullopt;
  for (Eigen::Index i = 0; i < m.scales.size(); ++i) {
    const float s = m.scales.data()[i];
    if (ggml_detail::fp16_to_fp32(ggml_detail::fp32_to_fp16(s)) != s) return std::nullopt;
  }
  return blocks_of(m, grid, width);
}

}  // namespace ptq
