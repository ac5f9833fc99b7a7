// ggml's k-quants Q2_K ... Q6_K (ggml-quants.c), reproduced operation for
// operation so that the codes and scales equal llama-quantize's bit for bit:
// float32 throughout in ggml's evaluation order with no fused multiply-adds
// (GCC contracts none in this project's ISO -std=c++20 mode; ggml-quants.c sits
// in ggml-base, which llama.cpp builds without -mfma, and the byte-exact tests
// against llama-quantize confirm it), nearest_int's magic-number rounding, d
// and dmin rounded to float16 before the final codes.
// Without an importance vector llama-quantize runs quantize_row_qN_K_ref, with
// one quantize_row_qN_K_impl; both are here, one function per type and path.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "algorithms/ggml_families.hpp"
#include "algorithms/ggml_round.hpp"
#include "algorithms/ggml_search.hpp"
#include "io/error.hpp"

namespace ptq::ggml_detail {

namespace {

constexpr int kSuper = 256;  // QK_K: weights per super-block

// One super-block of a GgmlBlocks: its 256 weights in, its scales and codes out.
struct SuperBlock {
  const float* x;           // [256]
  const float* importance;  // [256], or nullptr without an imatrix
  std::uint16_t* d;
  std::uint16_t* dmin;      // Q2_K, Q4_K, Q5_K only
  std::int8_t* sub_scales;  // [sub_blocks]
  std::int8_t* sub_mins;    // [sub_blocks], Q2_K, Q4_K, Q5_K only
  std::int8_t* codes;       // [256]

  // Sub-block j of `size` weights: its weights, importances and codes.
  struct Sub {
    const float* x;
    const float* importance;  // nullptr without an imatrix
    std::int8_t* codes;
  };
  Sub sub(int size, int j) const {
    const std::ptrdiff_t at = std::ptrdiff_t{size} * j;
    return {.x = x + at, .importance = importance ? importance + at : nullptr, .codes = codes + at};
  }
};

// The last pass of every type with mins: each code against the stored,
// float16-rounded scale d and offset m of its sub-block, as in
// quantize_row_q2_K_ref ... q5_K_impl. A zero d keeps the search's codes.
void requantize_with_min(const SuperBlock::Sub& s, int n, float d, float m, int nmax) {
  if (d == 0.0f) return;
  for (int i = 0; i < n; ++i) {
    s.codes[i] = static_cast<std::int8_t>(std::clamp(nearest_int((s.x[i] + m) / d), 0, nmax));
  }
}

// The same for the symmetric types (Q3_K, Q6_K): codes l + offset for
// l = round(x / d) in [-offset, offset).
void requantize_symmetric(const SuperBlock::Sub& s, int n, float d, int offset) {
  if (d == 0.0f) return;
  for (int i = 0; i < n; ++i) {
    s.codes[i] =
        static_cast<std::int8_t>(std::clamp(nearest_int(s.x[i] / d), -offset, offset - 1) + offset);
  }
}

float sum_of_squares(const float* x, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

// The imatrix weighting of the _impl quantizers: w = importance * sqrt(sigma2 + x^2).
// Returns the sum of the weights (ggml's sw[j]).
float importance_weights(const SuperBlock::Sub& s, int n, float sigma2, float* w) {
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    w[i] = s.importance[i] * std::sqrt(sigma2 + s.x[i] * s.x[i]);
    sum += w[i];
  }
  return sum;
}

// ---- Q2_K: 16 sub-blocks of 16, 2-bit codes, 4-bit scales and mins -----------

constexpr int kQ2Sub = 16;
constexpr int kQ2Nmax = 3;
constexpr int kQ2ScaleMax = 15;  // q4scale: the 4-bit sub-scales and sub-mins
// quantize_row_q2_K_ref's make_qkx2_quants(16, 3, ..., -0.5f, 0.1f, 15, true).
constexpr AsymmetricSearch kQ2Reference{.nmax = kQ2Nmax,
                                        .rmin = -0.5f,
                                        .rdelta = 0.1f,
                                        .nstep = 15,
                                        .loss = Loss::absolute,
                                        .codes = CodeRule::qkx2};

// Splits Q2_K's packed scale byte (low nibble scale, high nibble min) and
// requantizes against it.
void finish_q2_k(const SuperBlock& b, const std::array<std::uint8_t, kQ2Sub>& packed) {
  const float d = fp16_to_fp32(*b.d), dmin = fp16_to_fp32(*b.dmin);
  for (int j = 0; j < kQ2Sub; ++j) {
    b.sub_scales[j] = static_cast<std::int8_t>(packed[j] & 0xF);
    b.sub_mins[j] = static_cast<std::int8_t>(packed[j] >> 4);
    requantize_with_min(b.sub(kQ2Sub, j), kQ2Sub, d * static_cast<float>(packed[j] & 0xF),
                        dmin * static_cast<float>(packed[j] >> 4), kQ2Nmax);
  }
}

// quantize_row_q2_K_ref: |x|-weighted fits, scales and mins on a linear 4-bit
// grid up to their largest value.
void q2_k_reference(const SuperBlock& b) {
  std::array<float, kQ2Sub> scales{}, mins{}, w{};
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQ2Sub; ++j) {
    const SuperBlock::Sub s = b.sub(kQ2Sub, j);
    for (int i = 0; i < kQ2Sub; ++i) w[i] = std::fabs(s.x[i]);
    const AsymmetricFit fit = fit_asymmetric({s.x, kQ2Sub}, w, kQ2Reference, s.codes);
    scales[j] = fit.scale;
    mins[j] = fit.neg_min;
    max_scale = std::max(max_scale, fit.scale);
    max_min = std::max(max_min, fit.neg_min);
  }
  std::array<std::uint8_t, kQ2Sub> packed{};
  *b.d = fp32_to_fp16(0.0f);
  if (max_scale > 0) {
    const float iscale = kQ2ScaleMax / max_scale;
    for (int j = 0; j < kQ2Sub; ++j) {
      packed[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
    }
    *b.d = fp32_to_fp16(max_scale / kQ2ScaleMax);
  }
  *b.dmin = fp32_to_fp16(0.0f);
  if (max_min > 0) {
    const float iscale = kQ2ScaleMax / max_min;
    for (int j = 0; j < kQ2Sub; ++j) {
      packed[j] = static_cast<std::uint8_t>(packed[j] | (nearest_int(iscale * mins[j]) << 4));
    }
    *b.dmin = fp32_to_fp16(max_min / kQ2ScaleMax);
  }
  finish_q2_k(b, packed);
}

// quantize_row_q2_K_impl: importance-weighted fits, then the sub-scales and
// sub-mins themselves fitted (make_qp_quants) with the sub-blocks' weight sums.
void q2_k_imatrix(const SuperBlock& b) {
  std::array<float, kQ2Sub> scales{}, mins{}, sw{}, w{};
  const float sigma2 = sum_of_squares(b.x, kSuper) / kSuper;
  for (int j = 0; j < kQ2Sub; ++j) {
    const SuperBlock::Sub s = b.sub(kQ2Sub, j);
    sw[j] = importance_weights(s, kQ2Sub, sigma2, w.data());
    const AsymmetricFit fit = fit_asymmetric({s.x, kQ2Sub}, w, imatrix_search(kQ2Nmax), s.codes);
    scales[j] = fit.scale;
    mins[j] = fit.neg_min;
  }
  std::array<std::uint8_t, kQ2Sub> ls{}, lm{}, packed{};
  *b.d = fp32_to_fp16(fit_nonnegative(scales, sw, kQ2ScaleMax, ls));
  *b.dmin = fp32_to_fp16(fit_nonnegative(mins, sw, kQ2ScaleMax, lm));
  for (int j = 0; j < kQ2Sub; ++j) packed[j] = static_cast<std::uint8_t>(ls[j] | (lm[j] << 4));
  finish_q2_k(b, packed);
}

// ---- Q3_K: 16 sub-blocks of 16, 3-bit codes, 6-bit signed scales ------------

constexpr int kQ3Sub = 16;
constexpr int kQ3Half = 4;        // codes l + 4, l in [-4, 4)
constexpr int kQ3ScaleHalf = 32;  // sub-scales s + 32, s in [-32, 32)

void finish_q3_k(const SuperBlock& b) {
  const float d = fp16_to_fp32(*b.d);
  for (int j = 0; j < kQ3Sub; ++j) {
    const float dj = d * static_cast<float>(b.sub_scales[j] - kQ3ScaleHalf);
    requantize_symmetric(b.sub(kQ3Sub, j), kQ3Sub, dj, kQ3Half);
  }
}

// quantize_row_q3_K_ref: x^2-weighted iterative fits (make_q3_quants), the
// signed sub-scales on a 6-bit grid set by the largest in magnitude.
void q3_k_reference(const SuperBlock& b) {
  std::array<float, kQ3Sub> scales{};
  float max_scale = 0, amax = 0;
  for (int j = 0; j < kQ3Sub; ++j) {
    const SuperBlock::Sub s = b.sub(kQ3Sub, j);
    scales[j] = fit_symmetric_iterative({s.x, kQ3Sub}, kQ3Half, s.codes);
    if (std::fabs(scales[j]) > amax) {
      amax = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  *b.d = fp32_to_fp16(0.0f);
  if (max_scale != 0) {
    const float iscale = -static_cast<float>(kQ3ScaleHalf) / max_scale;
    for (int j = 0; j < kQ3Sub; ++j) {
      // ggml stores nearest_int into an int8_t before clamping.
      const auto l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
      b.sub_scales[j] = static_cast<std::int8_t>(
          std::clamp<int>(l, -kQ3ScaleHalf, kQ3ScaleHalf - 1) + kQ3ScaleHalf);
    }
    *b.d = fp32_to_fp16(1 / iscale);
  }
  finish_q3_k(b);
}

// quantize_row_q3_K_impl: importance-weighted make_qx_quants per sub-block, the
// sub-scales fitted the same way with the sub-blocks' weight sums.
void q3_k_imatrix(const SuperBlock& b) {
  std::array<float, kQ3Sub> scales{}, sw{}, w{};
  const float sigma2 = 2 * sum_of_squares(b.x, kSuper) / kSuper;
  for (int j = 0; j < kQ3Sub; ++j) {
    const SuperBlock::Sub s = b.sub(kQ3Sub, j);
    sw[j] = importance_weights(s, kQ3Sub, sigma2, w.data());
    scales[j] = fit_symmetric({s.x, kQ3Sub}, w, kQ3Half, s.codes);
  }
  *b.d = fp32_to_fp16(fit_symmetric(scales, sw, kQ3ScaleHalf, b.sub_scales));
  finish_q3_k(b);
}

// ---- Q4_K and Q5_K: 8 sub-blocks of 32, 6-bit scales and mins ----------------

constexpr int kQ45Sub = 32;
constexpr int kQ45Subs = kSuper / kQ45Sub;
constexpr int kQ45ScaleMax = 63;

// What Q4_K and Q5_K differ in: the code range, and the trial range of
// quantize_row_qN_K_ref's make_qkx2_quants(32, nmax, ..., rmin, 0.1f, nstep, false).
struct Q45Type {
  int nmax;  // 15 (Q4_K) or 31 (Q5_K)
  float rmin;
  int nstep;

  constexpr AsymmetricSearch reference() const {
    return {.nmax = nmax,
            .rmin = rmin,
            .rdelta = 0.1f,
            .nstep = nstep,
            .loss = Loss::squared,
            .codes = CodeRule::qkx2};
  }
};
constexpr Q45Type kQ4{.nmax = 15, .rmin = -1.0f, .nstep = 20};
constexpr Q45Type kQ5{.nmax = 31, .rmin = -0.5f, .nstep = 15};

void finish_q45_k(const SuperBlock& b, int nmax) {
  const float d = fp16_to_fp32(*b.d), dmin = fp16_to_fp32(*b.dmin);
  for (int j = 0; j < kQ45Subs; ++j) {
    requantize_with_min(b.sub(kQ45Sub, j), kQ45Sub, d * static_cast<float>(b.sub_scales[j]),
                        dmin * static_cast<float>(b.sub_mins[j]), nmax);
  }
}

// quantize_row_q4_K_ref / q5_K_ref: fits weighted by rms(x) + |x|, scales and
// mins on a linear 6-bit grid up to their largest value.
void q45_k_reference(const SuperBlock& b, const Q45Type& type) {
  std::array<float, kQ45Subs> scales{}, mins{};
  std::array<float, kQ45Sub> w{};
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQ45Subs; ++j) {
    const SuperBlock::Sub s = b.sub(kQ45Sub, j);
    const float av_x = std::sqrt(sum_of_squares(s.x, kQ45Sub) / kQ45Sub);
    for (int i = 0; i < kQ45Sub; ++i) w[i] = av_x + std::fabs(s.x[i]);
    const AsymmetricFit fit = fit_asymmetric({s.x, kQ45Sub}, w, type.reference(), s.codes);
    scales[j] = fit.scale;
    mins[j] = fit.neg_min;
    max_scale = std::max(max_scale, fit.scale);
    max_min = std::max(max_min, fit.neg_min);
  }
  const float inv_scale = max_scale > 0 ? kQ45ScaleMax / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? kQ45ScaleMax / max_min : 0.0f;
  for (int j = 0; j < kQ45Subs; ++j) {
    // ggml stores nearest_int into a uint8_t, then clamps to 63.
    const auto ls = static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j]));
    const auto lm = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
    b.sub_scales[j] = static_cast<std::int8_t>(std::min<int>(kQ45ScaleMax, ls));
    b.sub_mins[j] = static_cast<std::int8_t>(std::min<int>(kQ45ScaleMax, lm));
  }
  *b.d = fp32_to_fp16(max_scale / kQ45ScaleMax);
  *b.dmin = fp32_to_fp16(max_min / kQ45ScaleMax);
  finish_q45_k(b, type.nmax);
}

// quantize_row_q4_K_impl / q5_K_impl: importance-weighted fits, the sub-scales
// and sub-mins fitted (make_qp_quants) with the sub-blocks' weight sums.
void q45_k_imatrix(const SuperBlock& b, const Q45Type& type) {
  std::array<float, kQ45Subs> scales{}, mins{}, sw{};
  std::array<float, kQ45Sub> w{};
  const float sigma2 = 2 * sum_of_squares(b.x, kSuper) / kSuper;
  for (int j = 0; j < kQ45Subs; ++j) {
    const SuperBlock::Sub s = b.sub(kQ45Sub, j);
    sw[j] = importance_weights(s, kQ45Sub, sigma2, w.data());
    const AsymmetricFit fit = fit_asymmetric({s.x, kQ45Sub}, w, imatrix_search(type.nmax), s.codes);
    scales[j] = fit.scale;
    mins[j] = fit.neg_min;
  }
  std::array<std::uint8_t, kQ45Subs> ls{}, lm{};
  const float d = fit_nonnegative(scales, sw, kQ45ScaleMax, ls);
  const float m = fit_nonnegative(mins, sw, kQ45ScaleMax, lm);
  // make_qp_quants keeps the codes of non-negative inputs within 63 (q5_K_impl
  // clamps again, q4_K_impl does not need to).
  for (int j = 0; j < kQ45Subs; ++j) {
    b.sub_scales[j] = static_cast<std::int8_t>(ls[j]);
    b.sub_mins[j] = static_cast<std::int8_t>(lm[j]);
  }
  *b.d = fp32_to_fp16(d);
  *b.dmin = fp32_to_fp16(m);
  finish_q45_k(b, type.nmax);
}

// ---- Q6_K: 16 sub-blocks of 16, 6-bit codes, 8-bit signed scales -------------

constexpr int kQ6Sub = 16;
constexpr int kQ6Half = 32;        // codes l + 32, l in [-32, 32)
constexpr int kQ6ScaleMin = -128;  // iscale = -128 / max_scale
constexpr int kQ6ScaleMax = 127;

// quantize_row_q6_K_ref (weights x^2) and quantize_row_q6_K_impl (the
// importance itself, not sigma-weighted): make_qx_quants per sub-block, the
// sub-scales on a signed 8-bit grid set by the largest in magnitude.
void q6_k(const SuperBlock& b) {
  std::array<float, kQ6Sub> scales{}, w{};
  float max_scale = 0, max_abs_scale = 0;
  for (int j = 0; j < kQ6Sub; ++j) {
    const SuperBlock::Sub s = b.sub(kQ6Sub, j);
    for (int i = 0; i < kQ6Sub; ++i) w[i] = s.importance ? s.importance[i] : s.x[i] * s.x[i];
    scales[j] = fit_symmetric({s.x, kQ6Sub}, w, kQ6Half, s.codes);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {  // ggml zeroes the whole block
    *b.d = fp32_to_fp16(0.0f);
    std::fill_n(b.sub_scales, kQ6Sub, 0);
    std::fill_n(b.codes, kSuper, 0);
    return;
  }
  const float iscale = static_cast<float>(kQ6ScaleMin) / max_scale;
  *b.d = fp32_to_fp16(1 / iscale);
  const float d = fp16_to_fp32(*b.d);
  for (int j = 0; j < kQ6Sub; ++j) {
    b.sub_scales[j] =
        static_cast<std::int8_t>(std::min(kQ6ScaleMax, nearest_int(iscale * scales[j])));
    requantize_symmetric(b.sub(kQ6Sub, j), kQ6Sub, d * static_cast<float>(b.sub_scales[j]),
                         kQ6Half);
  }
}

// The quantizer llama-quantize runs for `grid` (quantize_qN_K: _ref without
// importance, _impl with it).
void quantize_block(GgmlGrid grid, const SuperBlock& b) {
  const bool imatrix = b.importance != nullptr;
  switch (grid) {
    case GgmlGrid::q2_k:
      return imatrix ? q2_k_imatrix(b) : q2_k_reference(b);
    case GgmlGrid::q3_k:
      return imatrix ? q3_k_imatrix(b) : q3_k_reference(b);
    case GgmlGrid::q4_k:
      return imatrix ? q45_k_imatrix(b, kQ4) : q45_k_reference(b, kQ4);
    case GgmlGrid::q5_k:
      return imatrix ? q45_k_imatrix(b, kQ5) : q45_k_reference(b, kQ5);
    case GgmlGrid::q6_k:
      return q6_k(b);
    default:
      PTQ_ASSERT(false);
  }
}

// Runs f(row) over the rows in parallel; rows are independent, so the result
// does not depend on the thread count.
template <class F>
void for_each_row(std::int64_t rows, F&& f) {
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, rows), [&](const auto& range) {
    for (std::int64_t r = range.begin(); r < range.end(); ++r) f(r);
  });
}

}  // namespace

void quantize_kquant(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  PTQ_ASSERT(info.block_size == kSuper);
  const std::int64_t per_row = q.cols / kSuper;
  for_each_row(q.rows, [&](std::int64_t r) {
    for (std::int64_t i = 0; i < per_row; ++i) {
      const std::int64_t block = r * per_row + i;
      const std::int64_t sub = block * info.sub_blocks;
      quantize_block(q.grid,
                     {.x = W.data() + r * q.cols + i * kSuper,
                      .importance = importance.empty() ? nullptr : importance.data() + i * kSuper,
                      .d = &q.d[block],
                      .dmin = info.has_min ? &q.dmin[block] : nullptr,
                      .sub_scales = &q.sub_scales[sub],
                      .sub_mins = info.has_min ? &q.sub_mins[sub] : nullptr,
                      .codes = &q.codes[block * kSuper]});
    }
  });
}

// dequantize_row_q2_K ... q6_K: y = (d * scale) * code - (dmin * min) per
// sub-block, with Q3_K's and Q6_K's stored offsets (scale - 32, code - 4;
// code - 32) removed first, in ggml's float order.
void dequantize_kquant(const GgmlBlocks& q, MatrixRM& W) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const int sub_size = kSuper / info.sub_blocks;
  const int scale_offset = q.grid == GgmlGrid::q3_k ? kQ3ScaleHalf : 0;
  const int code_offset = q.grid == GgmlGrid::q3_k   ? kQ3Half
                          : q.grid == GgmlGrid::q6_k ? kQ6Half
                                                     : 0;
  const std::int64_t per_row = q.cols / kSuper;
  for_each_row(q.rows, [&](std::int64_t r) {
    for (std::int64_t block = r * per_row; block < (r + 1) * per_row; ++block) {
      const float d = fp16_to_fp32(q.d[block]);
      const float dmin = info.has_min ? fp16_to_fp32(q.dmin[block]) : 0.0f;
      for (int j = 0; j < info.sub_blocks; ++j) {
        const std::int64_t sub = block * info.sub_blocks + j;
        const float dl = d * static_cast<float>(q.sub_scales[sub] - scale_offset);
        const float ml = info.has_min ? dmin * static_cast<float>(q.sub_mins[sub]) : 0.0f;
        const std::int64_t first = block * kSuper + std::int64_t{j} * sub_size;
        float* y = W.data() + first;
        for (int i = 0; i < sub_size; ++i) {
          const float code = static_cast<float>(q.codes[first + i] - code_offset);
          y[i] = info.has_min ? dl * code - ml : dl * code;
        }
      }
    }
  });
}

}  // namespace ptq::ggml_detail
