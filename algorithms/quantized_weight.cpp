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

namespace {

// Throws, naming the part, when a part of a fused Linear differs from part 0.
void require_like_first(bool same, const std::string& where, std::size_t part,
                        const std::string& what) {
  if (!same)
    throw input_error(where + ": part " + std::to_string(part) + " of the fused Linear",
                      "the " + what + " of part 0", "another " + what);
}

QuantizedMatrix stack_matrices(std::span<const QuantizedWeight> parts, const std::string& where) {
  const auto& first = std::get<QuantizedMatrix>(parts.front());
  Eigen::Index rows = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& p = std::get<QuantizedMatrix>(parts[i]);
    require_like_first(p.spec == first.spec, where, i, "grid");
    require_like_first(p.columns() == first.columns() && p.g_idx == first.g_idx, where, i,
                       "columns and group of each column (g_idx)");
    rows += p.rows();
  }
  QuantizedMatrix out{first.spec, CodeMatrix(rows, first.codes.cols()),
                      MatrixRM(rows, first.scales.cols()), MatrixRM(rows, first.zeros.cols()),
                      first.g_idx};
  Eigen::Index r = 0;
  for (const QuantizedWeight& w : parts) {
    const auto& p = std::get<QuantizedMatrix>(w);
    out.codes.middleRows(r, p.rows()) = p.codes;
    out.scales.middleRows(r, p.rows()) = p.scales;
    out.zeros.middleRows(r, p.rows()) = p.zeros;
    r += p.rows();
  }
  return out;
}

template <class T>
void append(std::vector<T>& to, const std::vector<T>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// ggml's blocks run along each row, so the rows' blocks stack as they are.
GgmlBlocks stack_blocks(std::span<const QuantizedWeight> parts, const std::string& where) {
  const auto& first = std::get<GgmlBlocks>(parts.front());
  GgmlBlocks out{first.grid, 0, first.cols, {}, {}, {}, {}, {}};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& p = std::get<GgmlBlocks>(parts[i]);
    require_like_first(p.grid == first.grid && p.cols == first.cols, where, i,
                       "ggml type and columns");
    out.rows += p.rows;
    append(out.d, p.d);
    append(out.dmin, p.dmin);
    append(out.sub_scales, p.sub_scales);
    append(out.sub_mins, p.sub_mins);
    append(out.codes, p.codes);
  }
  return out;
}

}  // namespace

QuantizedWeight stack_rows(std::span<const QuantizedWeight> parts, const std::string& where) {
  PTQ_ASSERT(!parts.empty());
  for (std::size_t i = 0; i < parts.size(); ++i)
    require_like_first(parts[i].index() == parts.front().index(), where, i, "kind of grid");
  if (std::holds_alternative<QuantizedMatrix>(parts.front())) return stack_matrices(parts, where);
  if (std::holds_alternative<GgmlBlocks>(parts.front())) return stack_blocks(parts, where);
  std::vector<Nf4Matrix> nf4;
  for (const QuantizedWeight& p : parts) nf4.push_back(std::get<Nf4Matrix>(p));
  return nf4_stack_rows(nf4, where);
}

namespace {

// Elements [first * per_row, (first + rows) * per_row) of a per-row-major vector.
template <class T>
std::vector<T> row_range(const std::vector<T>& v, std::int64_t first, std::int64_t rows,
                         std::int64_t per_row) {
  if (v.empty()) return {};
  return {v.begin() + first * per_row, v.begin() + (first + rows) * per_row};
}

}  // namespace

QuantizedWeight slice_rows(const QuantizedWeight& fused, std::int64_t first, std::int64_t rows,
                           const std::string& where) {
  if (const auto* m = std::get_if<QuantizedMatrix>(&fused)) {
    if (first < 0 || rows < 0 || first + rows > m->rows())
      throw input_error(where, "at least " + std::to_string(first + rows) + " rows",
                        std::to_string(m->rows()));
    return QuantizedMatrix{m->spec, m->codes.middleRows(first, rows),
                           m->scales.middleRows(first, rows), m->zeros.middleRows(first, rows),
                           m->g_idx};
  }
  if (const auto* b = std::get_if<GgmlBlocks>(&fused)) {
    if (first < 0 || rows < 0 || first + rows > b->rows)
      throw input_error(where, "at least " + std::to_string(first + rows) + " rows",
                        std::to_string(b->rows));
    const GgmlGridInfo& info = ggml_grid_info(b->grid);
    const std::int64_t blocks = b->cols / info.block_size;
    return GgmlBlocks{b->grid,
                      rows,
                      b->cols,
                      row_range(b->d, first, rows, blocks),
                      row_range(b->dmin, first, rows, blocks),
                      row_range(b->sub_scales, first, rows, blocks * info.sub_blocks),
                      row_range(b->sub_mins, first, rows, blocks * info.sub_blocks),
                      row_range(b->codes, first, rows, b->cols)};
  }
  return nf4_slice_rows(std::get<Nf4Matrix>(fused), static_cast<int>(first), static_cast<int>(rows),
                        where);
}

}  // namespace ptq
