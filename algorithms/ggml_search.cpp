#include "algorithms/ggml_search.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "algorithms/ggml_round.hpp"
#include "io/error.hpp"

namespace ptq::ggml_detail {

namespace {

constexpr int kMaxGroup = 32;          // the largest group ggml searches (a Q4_K/Q5_K sub-block)
constexpr int kRefineRounds = 5;       // make_q3_quants / make_qp_quants: itry < 5
constexpr int kSymmetricTrials = 9;    // make_qx_quants: is = -9 ... 9
constexpr int kNonnegativeTrials = 4;  // make_qp_quants: is = -4 ... 4
constexpr float kTrialStep = 0.1f;     // both: nmax + 0.1 * is

float loss_of(float diff, Loss loss) {
  return loss == Loss::absolute ? std::fabs(diff) : diff * diff;
}

// sum w * loss(scale * code + min - x), in ggml's order.
float weighted_error(std::span<const float> x, std::span<const float> w, const std::int8_t* codes,
                     float scale, float min, Loss loss) {
  float error = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    error += w[i] * loss_of(scale * static_cast<float>(codes[i]) + min - x[i], loss);
  }
  return error;
}

int trial_code(float v, int nmax, CodeRule rule) {
  if (rule == CodeRule::qkx2) return std::clamp(nearest_int(v), 0, nmax);
  return v > 0 ? nearest_int(std::min(v, static_cast<float>(nmax))) : 0;
}

// The element of largest magnitude (the first on ties), as make_qx_quants and
// make_q3_quants find it; 0 when every |x| is below GROUP_MAX_EPS.
float signed_absmax(std::span<const float> x) {
  float max = 0, amax = 0;
  for (float v : x) {
    if (std::fabs(v) > amax) {
      amax = std::fabs(v);
      max = v;
    }
  }
  return amax < kGroupMaxEps ? 0.0f : max;
}

// Weighted sums of one symmetric trial: codes l in [-nmax, nmax) of x * iscale.
struct SymmetricTrial {
  std::array<int, kMaxGroup> l{};
  float sumlx = 0, suml2 = 0;
};

SymmetricTrial symmetric_trial(std::span<const float> x, std::span<const float> w, int nmax,
                               float iscale) {
  SymmetricTrial t;
  for (std::size_t i = 0; i < x.size(); ++i) {
    t.l[i] = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    const auto l = static_cast<float>(t.l[i]);
    t.sumlx += w[i] * x[i] * l;
    t.suml2 += w[i] * l * l;
  }
  return t;
}

void store_symmetric(const SymmetricTrial& t, int nmax, std::size_t n, std::int8_t* codes) {
  for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<std::int8_t>(t.l[i] + nmax);
}

}  // namespace

AsymmetricFit fit_asymmetric(std::span<const float> x, std::span<const float> w,
                             const AsymmetricSearch& search, std::int8_t* codes) {
  const std::size_t n = x.size();
  PTQ_ASSERT(n <= kMaxGroup && w.size() == n);
  float min = x[0], max = x[0];
  float sum_w = w[0], sum_x = sum_w * x[0];
  for (std::size_t i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  min = std::min(min, 0.0f);
  if (max == min) {
    std::fill_n(codes, n, 0);
    return {.scale = 0.0f, .neg_min = -min};
  }
  const auto nmax = static_cast<float>(search.nmax);
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  for (std::size_t i = 0; i < n; ++i) {
    codes[i] =
        static_cast<std::int8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, search.nmax));
  }
  float best = weighted_error(x, w, codes, scale, min, search.loss);
  std::array<std::int8_t, kMaxGroup> trial{};
  for (int step = 0; step <= search.nstep; ++step) {
    // The running min, not the initial one: ggml's loop reads the updated value.
    iscale = (search.rmin + search.rdelta * static_cast<float>(step) + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const int code = trial_code(iscale * (x[i] - min), search.nmax, search.codes);
      trial[i] = static_cast<std::int8_t>(code);
      const auto l = static_cast<float>(code);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    const float error = weighted_error(x, w, trial.data(), this_scale, this_min, search.loss);
    if (error < best) {
      std::copy_n(trial.begin(), n, codes);
      best = error;
      scale = this_scale;
      min = this_min;
    }
  }
  return {.scale = scale, .neg_min = -min};
}

float fit_symmetric(std::span<const float> x, std::span<const float> w, int nmax,
                    std::int8_t* codes) {
  PTQ_ASSERT(x.size() <= kMaxGroup && w.size() == x.size());
  const float max = signed_absmax(x);
  if (max == 0) {
    std::fill_n(codes, x.size(), 0);
    return 0.0f;
  }
  const SymmetricTrial first = symmetric_trial(x, w, nmax, static_cast<float>(-nmax) / max);
  store_symmetric(first, nmax, x.size(), codes);
  float scale = first.suml2 != 0 ? first.sumlx / first.suml2 : 0.0f;
  float best = scale * first.sumlx;
  for (int is = -kSymmetricTrials; is <= kSymmetricTrials; ++is) {
    if (is == 0) continue;
    const float iscale = -(static_cast<float>(nmax) + kTrialStep * static_cast<float>(is)) / max;
    const SymmetricTrial t = symmetric_trial(x, w, nmax, iscale);
    if (t.suml2 > 0 && t.sumlx * t.sumlx > best * t.suml2) {
      store_symmetric(t, nmax, x.size(), codes);
      scale = t.sumlx / t.suml2;
      best = scale * t.sumlx;
    }
  }
  return scale;
}

float fit_symmetric_iterative(std::span<const float> x, int nmax, std::int8_t* codes) {
  PTQ_ASSERT(x.size() <= kMaxGroup);
  const float max = signed_absmax(x);
  if (max == 0) {
    std::fill_n(codes, x.size(), 0);
    return 0.0f;
  }
  std::array<float, kMaxGroup> w{};
  for (std::size_t i = 0; i < x.size(); ++i) w[i] = x[i] * x[i];
  SymmetricTrial t =
      symmetric_trial(x, {w.data(), x.size()}, nmax, static_cast<float>(-nmax) / max);
  for (int round = 0; round < kRefineRounds; ++round) {
    int changed = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto old_l = static_cast<float>(t.l[i]);
      float slx = t.sumlx - w[i] * x[i] * old_l;
      if (!(slx > 0)) continue;
      float sl2 = t.suml2 - w[i] * old_l * old_l;
      const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (new_l == t.l[i]) continue;
      slx += w[i] * x[i] * static_cast<float>(new_l);
      sl2 += w[i] * static_cast<float>(new_l) * static_cast<float>(new_l);
      if (sl2 > 0 && slx * slx * t.suml2 > t.sumlx * t.sumlx * sl2) {
        t.l[i] = new_l;
        t.sumlx = slx;
        t.suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  store_symmetric(t, nmax, x.size(), codes);
  return t.suml2 > 0 ? t.sumlx / t.suml2 : 0.0f;
}

namespace {

// make_qp_quants' choice of inverse scale: (nmax + 0.1 * is) / max for the
// trial of least weighted squared error, the first on ties.
float nonnegative_iscale(std::span<const float> x, std::span<const float> w, int nmax, float max,
                         std::span<std::uint8_t> codes) {
  float iscale = static_cast<float>(nmax) / max;
  for (std::size_t i = 0; i < x.size(); ++i) {
    codes[i] = static_cast<std::uint8_t>(nearest_int(iscale * x[i]));
  }
  const float scale = 1 / iscale;
  float best = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float diff = x[i] - scale * static_cast<float>(codes[i]);
    best += w[i] * diff * diff;
  }
  for (int is = -kNonnegativeTrials; is <= kNonnegativeTrials; ++is) {
    if (is == 0) continue;
    const float trial = (kTrialStep * static_cast<float>(is) + static_cast<float>(nmax)) / max;
    const float trial_scale = 1 / trial;
    float error = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const int l = std::min(nmax, nearest_int(trial * x[i]));
      const float diff = x[i] - trial_scale * static_cast<float>(l);
      error += w[i] * diff * diff;
    }
    if (error < best) {
      best = error;
      iscale = trial;
    }
  }
  return iscale;
}

}  // namespace

float fit_nonnegative(std::span<const float> x, std::span<const float> w, int nmax,
                      std::span<std::uint8_t> codes) {
  PTQ_ASSERT(w.size() == x.size() && codes.size() == x.size());
  float max = 0;
  for (float v : x) max = std::max(max, v);
  if (max < kGroupMaxEps) {
    std::fill(codes.begin(), codes.end(), 0);
    return 0.0f;
  }
  const float iscale = nonnegative_iscale(x, w, nmax, max, codes);
  float sumlx = 0, suml2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    codes[i] = static_cast<std::uint8_t>(l);
    sumlx += w[i] * x[i] * static_cast<float>(l);
    suml2 += w[i] * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int round = 0; round < kRefineRounds; ++round) {
    int changed = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto old_l = static_cast<float>(codes[i]);
      float slx = sumlx - w[i] * x[i] * old_l;
      float sl2 = suml2 - w[i] * old_l * old_l;
      if (!(slx > 0 && sl2 > 0)) continue;
      const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
      if (new_l == codes[i]) continue;
      slx += w[i] * x[i] * static_cast<float>(new_l);
      sl2 += w[i] * static_cast<float>(new_l) * static_cast<float>(new_l);
      if (slx * slx * suml2 > sumlx * sumlx * sl2) {
        codes[i] = static_cast<std::uint8_t>(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

}  // namespace ptq::ggml_detail
