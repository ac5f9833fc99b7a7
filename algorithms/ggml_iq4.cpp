// ggml's non-linear 4-bit grids IQ4_NL (blocks of 32, one f16 scale) and IQ4_XS
// (super-blocks of 256: an f16 scale and eight 6-bit sub-block scales), bit for
// bit: llama-quantize's quantize_iq4_nl / quantize_iq4_xs call
// quantize_row_iq4_nl_impl with ntry = 7 whether or not there is an importance
// matrix; without one the weights are x^2 (the quantize_row_iq4_nl_ref path,
// ntry = -1, is not what llama-quantize runs). Every float expression keeps ggml's order.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>

#include "algorithms/ggml_families.hpp"
#include "algorithms/ggml_round.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// kvalues_iq4nl (ggml-common.h).
constexpr std::array<std::int8_t, 16> kIq4nlValues = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                      1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace

std::span<const std::int8_t, 16> iq4nl_values() { return kIq4nlValues; }

namespace ggml_detail {

namespace {

constexpr int kBlock = 32;        // QK4_NL, and IQ4_XS's sub-block
constexpr int kMaxSubBlocks = 8;  // IQ4_XS: QK_K / 32 sub-blocks per super-block
constexpr int kTries = 7;         // ntry: trial inverse scales (values[0] + t) / max, |t| <= 7
// IQ4_XS: super-block scale d = -max_scale / 32; sub-block scales l in [-32, 31]
// are stored as l + 32 (6 bits).
constexpr int kSubScaleBias = 32;

// best_index_int8: the index of the nearest of the sorted `values` (ties to the
// upper one), by a branchless binary search on x + x against sums of
// neighbours, which are exact.
int best_index(float x) {
  const float x2 = x + x;
  int idx = 0;
  for (int step = static_cast<int>(kIq4nlValues.size()) / 2; step > 0; step /= 2) {
    const int j = idx + step;
    idx = x2 >= static_cast<float>(kIq4nlValues[j - 1] + kIq4nlValues[j]) ? j : idx;
  }
  return idx;
}

using SubBlock = std::span<const float, kBlock>;
using Weights = std::array<float, kBlock>;

// quantize_row_iq4_nl_impl's weighted sums for one inverse scale.
struct Sums {
  float sumqx = 0.0f, sumq2 = 0.0f;
};
Sums trial(SubBlock x, const Weights& w, float id) {
  Sums s;
  for (int j = 0; j < kBlock; ++j) {
    const auto q = static_cast<float>(kIq4nlValues[best_index(id * x[j])]);
    s.sumqx += w[j] * q * x[j];
    s.sumq2 += w[j] * q * q;
  }
  return s;
}

// The best weighted least-squares scale of one sub-block over the trial
// roundings (0 for an all-zero sub-block).
float sub_block_scale(SubBlock x, const Weights& w) {
  float amax = 0.0f, max = 0.0f;
  for (const float v : x) {
    if (std::fabs(v) > amax) {
      amax = std::fabs(v);
      max = v;
    }
  }
  if (amax < kGroupMaxEps) return 0.0f;
  const auto lowest = static_cast<float>(kIq4nlValues[0]);
  Sums s = trial(x, w, 1.0f / (-max / lowest));
  float d = s.sumq2 > 0.0f ? s.sumqx / s.sumq2 : 0.0f;
  float best = d * s.sumqx;
  for (int t = -kTries; t <= kTries; ++t) {
    s = trial(x, w, static_cast<float>(t + kIq4nlValues[0]) / max);
    if (s.sumq2 > 0.0f && s.sumqx * s.sumqx > best * s.sumq2) {
      d = s.sumqx / s.sumq2;
      best = d * s.sumqx;
    }
  }
  return d;
}

// Weights: importance * sqrt(sigma2 + x^2) with an imatrix, else x^2.
Weights sub_block_weights(SubBlock x, std::span<const float> qw, float sigma2) {
  Weights w;
  for (int j = 0; j < kBlock; ++j) {
    w[j] = qw.empty() ? x[j] * x[j] : qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  }
  return w;
}

void assign_codes(SubBlock x, float id, std::span<std::int8_t> codes) {
  for (int j = 0; j < kBlock; ++j) codes[j] = static_cast<std::int8_t>(best_index(id * x[j]));
}

// One IQ4_NL block or IQ4_XS super-block (quantize_row_iq4_nl_impl); qw is its
// slice of the importance (or empty). Writes d, the sub-block scales (IQ4_XS)
// and the codes.
void quantize_super_block(std::span<const float> x, std::span<const float> qw, std::uint16_t& dh,
                          std::span<std::int8_t> sub_scales, std::span<std::int8_t> codes) {
  const auto n = static_cast<std::int64_t>(x.size());
  float sigma2 = 0.0f;
  for (const float v : x) sigma2 += v * v;
  sigma2 *= 2.0f / static_cast<float>(n);
  const std::int64_t subs = n / kBlock;
  PTQ_ASSERT(subs <= kMaxSubBlocks);
  std::array<float, kMaxSubBlocks> scales{};
  float max_scale = 0.0f, amax_scale = 0.0f;
  for (std::int64_t ib = 0; ib < subs; ++ib) {
    const SubBlock xb = x.subspan(ib * kBlock).first<kBlock>();
    const auto qwb = qw.empty() ? qw : qw.subspan(ib * kBlock, kBlock);
    scales[ib] = sub_block_scale(xb, sub_block_weights(xb, qwb, sigma2));
    if (std::fabs(scales[ib]) > amax_scale) {
      amax_scale = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  if (subs == 1) {  // IQ4_NL: the codes are re-rounded with the block's float scale
    dh = fp32_to_fp16(scales[0]);
    assign_codes(x.first<kBlock>(), scales[0] != 0.0f ? 1.0f / scales[0] : 0.0f, codes);
    return;
  }
  const float d = -max_scale / static_cast<float>(kSubScaleBias);
  dh = fp32_to_fp16(d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (std::int64_t ib = 0; ib < subs; ++ib) {
    const int l = std::clamp(nearest_int(id * scales[ib]), -kSubScaleBias, kSubScaleBias - 1);
    const float dl = d * static_cast<float>(l);
    assign_codes(x.subspan(ib * kBlock).first<kBlock>(), dl != 0.0f ? 1.0f / dl : 0.0f,
                 codes.subspan(ib * kBlock, kBlock));
    sub_scales[ib] = static_cast<std::int8_t>(l + kSubScaleBias);
  }
}

}  // namespace

void quantize_iq4(const MatrixRM& W, std::span<const float> importance, GgmlBlocks& q) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const std::int64_t cols = W.cols();
  const std::int64_t blocks_per_row = cols / info.block_size;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, W.rows()), [&](const auto& range) {
    for (std::int64_t r = range.begin(); r != range.end(); ++r) {
      for (std::int64_t b = 0; b < blocks_per_row; ++b) {
        const std::int64_t block = r * blocks_per_row + b;
        const std::int64_t start = b * info.block_size;
        std::span<std::int8_t> sub_scales;
        if (info.sub_blocks > 1) {
          sub_scales = std::span(q.sub_scales).subspan(block * info.sub_blocks, info.sub_blocks);
        }
        quantize_super_block(
            std::span<const float>(W.data() + r * cols + start, info.block_size),
            importance.empty() ? importance : importance.subspan(start, info.block_size),
            q.d[block], sub_scales, std::span(q.codes).subspan(r * cols + start, info.block_size));
      }
    }
  });
}

void dequantize_iq4(const GgmlBlocks& q, MatrixRM& W) {
  // dequantize_row_iq4_nl / iq4_xs: value = d * kvalues_iq4nl[code], with d
  // times (sub-scale - 32) per sub-block for IQ4_XS.
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const std::int64_t subs_total = q.rows * q.cols / kBlock;
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, subs_total), [&](const auto& range) {
    for (std::int64_t s = range.begin(); s != range.end(); ++s) {
      const std::int64_t block = s / info.sub_blocks;
      float dl = fp16_to_fp32(q.d[block]);
      if (info.sub_blocks > 1) dl = dl * static_cast<float>(q.sub_scales[s] - kSubScaleBias);
      float* out = W.data() + s * kBlock;
      for (int j = 0; j < kBlock; ++j) {
        out[j] = dl * static_cast<float>(kIq4nlValues[q.codes[s * kBlock + j]]);
      }
    }
  });
}

}  // namespace ggml_detail

}  // namespace ptq
