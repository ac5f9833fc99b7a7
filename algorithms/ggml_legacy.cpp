// ggml's legacy block grids Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (ggml-quants.c), bit for
// bit: without importance llama-quantize's quantize_q*_0/1 call the
// quantize_row_q*_ref rounding; with importance, quantize_row_q*_impl's weighted
// searches (make_qx_quants for Q4_0/Q5_0, make_qkx3_quants for Q4_1/Q5_1). Q8_0
// ignores importance (quantize_q8_0). Every float expression keeps ggml's order.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <span>

#include "algorithms/ggml_families.hpp"
#include "algorithms/ggml_round.hpp"
#include "algorithms/ggml_search.hpp"
#include "io/error.hpp"

namespace ptq::ggml_detail {

namespace {

constexpr int kBlock = 32;  // QK8_0 = QK4_0 = QK4_1 = QK5_0 = QK5_1 (ggml-common.h)

using Block = std::span<const float, kBlock>;
using BlockCodes = std::span<std::int8_t, kBlock>;
using BlockWeights = std::array<float, kBlock>;

// A block's float16 scale and (Q4_1, Q5_1) min.
struct BlockScales {
  std::uint16_t d = 0;
  std::uint16_t m = 0;
};

// How a grid rounds (ggml's quantize_row_q*_ref families).
enum class Rounding {
  q8,         // Q8_0: codes -127 ... 127, value = code * d
  symmetric,  // Q4_0, Q5_0: codes 0 ... 2 nmax - 1, value = (code - nmax) * d
  with_min,   // Q4_1, Q5_1: codes 0 ... nmax, value = code * d + m
};

struct LegacySpec {
  Rounding rounding;
  int nmax;  // ggml's nmax: Q8_0 127, Q4_0 8, Q5_0 16, Q4_1 15, Q5_1 31
};

LegacySpec spec_of(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q8_0:
      return {.rounding = Rounding::q8, .nmax = 127};
    case GgmlGrid::q4_0:
      return {.rounding = Rounding::symmetric, .nmax = 8};
    case GgmlGrid::q5_0:
      return {.rounding = Rounding::symmetric, .nmax = 16};
    case GgmlGrid::q4_1:
      return {.rounding = Rounding::with_min, .nmax = 15};
    case GgmlGrid::q5_1:
      return {.rounding = Rounding::with_min, .nmax = 31};
    default:
      PTQ_ASSERT(false && "not a legacy grid");
  }
  return {};
}

// quantize_row_q8_0_ref: d = amax / nmax (127), codes roundf(x / d), half away
// from zero.
BlockScales q8_0_block(Block x, int nmax, BlockCodes codes) {
  float amax = 0.0f;
  for (const float v : x) amax = std::max(amax, std::fabs(v));
  const float d = amax / static_cast<float>(nmax);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kBlock; ++j) codes[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  return {.d = fp32_to_fp16(d)};
}

// quantize_row_q4_0_ref / q5_0_ref: the signed extreme maps to -nmax; codes
// truncate x / d + nmax + 0.5.
BlockScales symmetric_ref_block(Block x, int nmax, BlockCodes codes) {
  float amax = 0.0f, max = 0.0f;
  for (const float v : x) {
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  const float d = max / static_cast<float>(-nmax);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float offset = static_cast<float>(nmax) + 0.5f;
  for (int j = 0; j < kBlock; ++j) {
    codes[j] =
        static_cast<std::int8_t>(std::min(2 * nmax - 1, static_cast<int>(x[j] * id + offset)));
  }
  return {.d = fp32_to_fp16(d)};
}

// quantize_row_q4_1_ref / q5_1_ref: [min, max] cut into nmax steps; codes
// truncate (x - min) / d + 0.5.
BlockScales min_ref_block(Block x, int nmax, BlockCodes codes) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (const float v : x) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const float d = (max - min) / static_cast<float>(nmax);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    // NOLINTNEXTLINE(bugprone-incorrect-roundings): ggml truncates v + 0.5 on purpose
    codes[j] = static_cast<std::int8_t>(std::min(nmax, static_cast<int>((x[j] - min) * id + 0.5f)));
  }
  return {.d = fp32_to_fp16(d), .m = fp32_to_fp16(min)};
}

// quantize_row_q*_impl's weights: importance * sqrt(sigma2 + x^2), sigma2 the
// row's mean square.
BlockWeights importance_weights(Block x, std::span<const float, kBlock> qw, float sigma2) {
  BlockWeights w;
  for (int j = 0; j < kBlock; ++j) w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  return w;
}

float row_mean_square(std::span<const float> row) {
  float sum_x2 = 0.0f;
  for (const float v : row) sum_x2 += v * v;
  return sum_x2 / static_cast<float>(row.size());
}

// One block by the reference rounding (quantize_row_q*_ref).
BlockScales ref_block(const LegacySpec& spec, Block x, BlockCodes codes) {
  switch (spec.rounding) {
    case Rounding::q8:
      return q8_0_block(x, spec.nmax, codes);
    case Rounding::symmetric:
      return symmetric_ref_block(x, spec.nmax, codes);
    case Rounding::with_min:
      return min_ref_block(x, spec.nmax, codes);
  }
  PTQ_ASSERT(false);
  return {};
}

// One block by quantize_row_q*_impl's importance-weighted search: make_qx_quants
// (rmse_type 1) for Q4_0/Q5_0, make_qkx3_quants for Q4_1/Q5_1.
BlockScales weighted_block(const LegacySpec& spec, Block x, const BlockWeights& w,
                           BlockCodes codes) {
  if (spec.rounding == Rounding::symmetric) {
    return {.d = fp32_to_fp16(fit_symmetric(x, w, spec.nmax, codes.data()))};
  }
  const AsymmetricFit fit = fit_asymmetric(x, w, imatrix_search(spec.nmax), codes.data());
  return {.d = fp32_to_fp16(fit.scale), .m = fp32_to_fp16(-fit.neg_min)};
}

// One row: the reference rounding without importance (and always for Q8_0:
// quantize_q8_0 ignores it), the weighted search with it. `m` is empty for the
// grids without a min.
void quantize_row(const LegacySpec& spec, std::span<const float> row, std::span<const float> qw,
                  std::span<std::uint16_t> d, std::span<std::uint16_t> m,
                  std::span<std::int8_t> row_codes) {
  const bool weighted = !qw.empty() && spec.rounding != Rounding::q8;
  const float sigma2 = weighted ? row_mean_square(row) : 0.0f;
  for (std::size_t b = 0; b < d.size(); ++b) {
    const Block x = row.subspan(b * kBlock).first<kBlock>();
    const BlockCodes codes = row_codes.subspan(b * kBlock).first<kBlock>();
    BlockScales scales;
    if (weighted) {
      const auto w = importance_weights(x, qw.subspan(b * kBlock).first<kBlock>(), sigma2);
      scales = weighted_block(spec, x, w, codes);
    } else {
      scales = ref_block(spec, x, codes);
    }
    d[b] = scales.d;
    if (!m.empty()) m[b] = scales.m;
  }
}

// ggml's dequantize_row_q*: (code - offset) * d, plus m for the grids with a min.
void dequantize_row(const LegacySpec& spec, const GgmlBlocks& q, std::int64_t r,
                    std::span<float> out) {
  const std::int64_t blocks_per_row = q.cols / kBlock;
  const int offset = spec.rounding == Rounding::symmetric ? spec.nmax : 0;
  const std::int8_t* codes = q.codes.data() + r * q.cols;
  for (std::int64_t b = 0; b < blocks_per_row; ++b) {
    const std::int64_t block = r * blocks_per_row + b;
    const float d = fp16_to_fp32(q.d[block]);
    const float m = spec.rounding == Rounding::with_min ? fp16_to_fp32(q.dmin[block]) : 0.0f;
    for (std::int64_t i = b * kBlock; i < (b + 1) * kBlock; ++i) {
      const auto code = static_cast<float>(codes[i] - offset);
      out[i] = spec.rounding == Rounding::with_min ? code * d + m : code * d;
    }
  }
}

}  // namespace

void quantize_legacy(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q) {
  const LegacySpec spec = spec_of(q.grid);
  const std::int64_t cols = W.cols();
  const std::int64_t blocks_per_row = cols / kBlock;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, W.rows()), [&](const auto& range) {
    for (std::int64_t r = range.begin(); r != range.end(); ++r) {
      const std::int64_t first_block = r * blocks_per_row;
      std::span<std::uint16_t> m;
      if (!q.dmin.empty()) m = std::span(q.dmin).subspan(first_block, blocks_per_row);
      quantize_row(spec, std::span<const float>(W.data() + r * cols, cols), importance,
                   std::span(q.d).subspan(first_block, blocks_per_row), m,
                   std::span(q.codes).subspan(r * cols, cols));
    }
  });
}

void dequantize_legacy(const GgmlBlocks& q, MatrixRM& W) {
  const LegacySpec spec = spec_of(q.grid);
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, q.rows), [&](const auto& range) {
    for (std::int64_t r = range.begin(); r != range.end(); ++r) {
      dequantize_row(spec, q, r, std::span<float>(W.data() + r * q.cols, q.cols));
    }
  });
}

}  // namespace ptq::ggml_detail
