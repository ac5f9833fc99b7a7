#pragma once
// Internal to ggml_kquants.cpp and ggml_legacy.cpp: ggml's scale searches for
// one group of weights (ggml-quants.c make_qkx2_quants, make_qkx3_quants,
// make_qx_quants, make_q3_quants, make_qp_quants), float for float. Each returns
// the group's float scale and writes one integer code per weight.
#include <cstdint>
#include <span>

namespace ptq::ggml_detail {

// What an asymmetric fit minimises: use_mad true (|error|) or false (error^2).
enum class Loss { absolute, squared };

// How a trial inverse scale turns a weight into a code. make_qkx2_quants rounds
// first and clamps the integer; make_qkx3_quants clamps the float to [0, nmax]
// first (safe when the running min has moved near max). Equal for finite,
// in-range values; kept apart to match ggml on every input.
enum class CodeRule { qkx2, qkx3 };

// The trial inverse scales (nmax + rmin + rdelta * step) / (max - min) for
// step = 0 ... nstep, as ggml passes them to make_qkx2/make_qkx3_quants.
struct AsymmetricSearch {
  int nmax;
  float rmin;
  float rdelta;
  int nstep;
  Loss loss;
  CodeRule codes;
};

// Every quantize_row_*_impl with a min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K):
// make_qkx3_quants(n, nmax, ..., -0.9f, 0.05f, 36, false).
constexpr AsymmetricSearch imatrix_search(int nmax) {
  return {.nmax = nmax,
          .rmin = -0.9f,
          .rdelta = 0.05f,
          .nstep = 36,
          .loss = Loss::squared,
          .codes = CodeRule::qkx3};
}

struct AsymmetricFit {
  float scale;    // x ≈ scale * code - neg_min
  float neg_min;  // ggml's the_min: minus the (non-positive) offset
};

// make_qkx2_quants / make_qkx3_quants: codes in [0, nmax] for x ≈ scale * code +
// min, min <= 0, the weighted least-squares refit of the best trial. w: [x.size()],
// codes: [x.size()], at most 32 weights.
AsymmetricFit fit_asymmetric(std::span<const float> x, std::span<const float> w,
                             const AsymmetricSearch& search, std::int8_t* codes);

// make_qx_quants with rmse_type 1: codes l + nmax for l in [-nmax, nmax), the
// weighted least-squares scale of the best of 19 trial inverse scales.
float fit_symmetric(std::span<const float> x, std::span<const float> w, int nmax,
                    std::int8_t* codes);

// make_q3_quants with do_rmse: like fit_symmetric with weights x^2, then up to
// five rounds of single-code changes that raise the fit.
float fit_symmetric_iterative(std::span<const float> x, int nmax, std::int8_t* codes);

// make_qp_quants: codes in [0, nmax] for non-negative x (sub-block scales or
// mins) ≈ scale * code, weights w; ggml's uint8_t codes.
float fit_nonnegative(std::span<const float> x, std::span<const float> w, int nmax,
                      std::span<std::uint8_t> codes);

}  // namespace ptq::ggml_detail
