// AWQ searches (algorithms/awq) against scalar loops written from the text of
// llm-awq's auto_scale.py / auto_clip.py / pseudo_quantize_tensor (as described in
// shared/fixtures/PROTOCOL.md and the paper), sharing no code with algorithms/.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "algorithms/awq.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

// pseudo_quantize_tensor of one group, element by element in float32.
std::vector<float> pseudo_quantize_ref(const std::vector<float>& w, int bits) {
  float lo = w[0], hi = w[0];
  for (float v : w) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const float maxq = static_cast<float>((1 << bits) - 1);
  const float scale = std::max(hi - lo, 1e-5f) / maxq;
  float zero = -std::nearbyint(lo / scale);
  zero = std::min(std::max(zero, 0.0f), maxq);
  std::vector<float> q;
  for (float v : w) {
    float c = std::nearbyint(v / scale) + zero;
    c = std::min(std::max(c, 0.0f), maxq);
    q.push_back((c - zero) * scale);
  }
  return q;
}

MatrixRM random_activations(int tokens, int in, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MatrixRM x(tokens, in);
  for (int c = 0; c < in; ++c) {
    const float channel_scale = 0.2f + 3.0f * static_cast<float>(c % 7) / 7.0f;  // uneven channels
    for (int t = 0; t < tokens; ++t) x(t, c) = channel_scale * normal(gen);
  }
  return x;
}

QuantSpec awq_spec(int bits, int group) {
  QuantSpec s;
  s.bits = bits;
  s.granularity = Granularity::Group;
  s.group_size = group;
  s.range = RangeRule::MinMax;
  return s;
}

TEST(AwqGrid, MinMaxRuleMatchesPseudoQuantize) {
  const MatrixRM W = test::random_weights(9, 96, 21).array() + 0.01f;  // ranges mostly off zero
  for (int bits : {3, 4}) {
    const MatrixRM q = rtn_quantize(W, awq_spec(bits, 32)).dequantize();
    for (int r = 0; r < W.rows(); ++r)
      for (int g = 0; g < 3; ++g) {
        std::vector<float> part(W.row(r).data() + 32 * g, W.row(r).data() + 32 * (g + 1));
        const auto want = pseudo_quantize_ref(part, bits);
        for (int c = 0; c < 32; ++c) ASSERT_EQ(q(r, 32 * g + c), want[c]) << r << " " << g << " " << c;
      }
  }
}

TEST(AwqGrid, MinMaxRuleRejectsSymmetric) {
  QuantSpec s = awq_spec(4, 32);
  s.symmetry = Symmetry::Symmetric;
  EXPECT_THROW(s.validate(), InputError);
}

TEST(AwqScale, CandidatesAreNormalizedPowers) {
  const VectorF act = (VectorF(4) << 0.5f, 2.0f, 8.0f, 1e-9f).finished();
  const VectorF s = awq_candidate_scales(act, 0.5f);
  // max(act^0.5, 1e-4) = {0.7071, 1.414, 2.828, 1e-4}; divided by sqrt(2.828 * 1e-4).
  const float norm = std::sqrt(std::sqrt(8.0f) * 1e-4f);
  EXPECT_NEAR(s[0], std::sqrt(0.5f) / norm, 1e-3f * s[0]);
  EXPECT_NEAR(s[2], std::sqrt(8.0f) / norm, 1e-3f * s[2]);
  EXPECT_NEAR(s[3], 1e-4f / norm, 1e-3f * s[3]);
  EXPECT_NEAR(s.maxCoeff() * s.minCoeff(), 1.0f, 1e-5f);
  EXPECT_TRUE((awq_candidate_scales(act, 0.0f).array() == 1.0f).all());
}

// The search returns the first ratio with the smallest loss, and that ratio's scales.
TEST(AwqScale, PicksFirstSmallestLoss) {
  const VectorF act = (VectorF(3) << 1.0f, 2.0f, 3.0f).finished();
  std::vector<float> seen;
  const AwqLossFn loss = [&](const VectorF& s) {
    seen.push_back(s[2] / s[0]);  // = 3^ratio
    const double ratio = std::log(s[2] / s[0]) / std::log(3.0);
    return std::abs(ratio - 0.5) < 0.26 ? 1.0 : 2.0;  // ties at 0.25, 0.3, ..., 0.75: the first wins
  };
  const AwqScaleSearch r = awq_search_scale(act, AwqScaleConfig{}, loss);
  ASSERT_EQ(seen.size(), 20u);
  EXPECT_FLOAT_EQ(r.ratio, 0.25f);
  EXPECT_EQ(r.loss, 1.0);
  EXPECT_TRUE(r.scales.isApprox(awq_candidate_scales(act, 0.25f)));
}

TEST(AwqScale, AllNanLossesAreAnInputError) {
  const VectorF act = VectorF::Ones(3);
  EXPECT_THROW(awq_search_scale(act, AwqScaleConfig{}, [](const VectorF&) { return std::nan(""); }), InputError);
}

TEST(AwqScale, ScaledFakeQuantUndoesTheScale) {
  const MatrixRM W = test::random_weights(6, 64, 22);
  const VectorF s = VectorF::LinSpaced(64, 0.5f, 2.0f);
  const MatrixRM got = awq_scaled_fake_quant(W, s, awq_spec(4, 32));
  for (int r = 0; r < W.rows(); ++r)
    for (int g = 0; g < 2; ++g) {
      std::vector<float> part;
      for (int c = 32 * g; c < 32 * (g + 1); ++c) part.push_back(W(r, c) * s[c]);
      const auto q = pseudo_quantize_ref(part, 4);
      for (int c = 0; c < 32; ++c) ASSERT_FLOAT_EQ(got(r, 32 * g + c), q[c] / s[32 * g + c]);
    }
}

TEST(AwqClip, SamplesEveryKthRow) {
  MatrixRM x(10, 2);
  for (int t = 0; t < 10; ++t) x.row(t).setConstant(static_cast<float>(t));
  const MatrixRM s = awq_sample_rows(x, 3);  // stride 10 / 3 = 3: rows 0, 3, 6, 9
  ASSERT_EQ(s.rows(), 4);
  EXPECT_EQ(s(3, 0), 9.0f);
  EXPECT_EQ(awq_sample_rows(x, 50).rows(), 10);
}

// Brute force in double over the same bounds: per row and group, the bound with
// the smallest mean squared partial-output error.
TEST(AwqClip, MatchesScalarSearch) {
  const int out = 12, in = 64, group = 32, tokens = 48, bits = 3;
  const MatrixRM W = test::random_weights(out, in, 23);
  const MatrixRM X = random_activations(tokens, in, 24);
  const MatrixRM got = awq_search_clip(W, X, awq_spec(bits, group), AwqClipConfig{});
  ASSERT_EQ(got.rows(), out);
  ASSERT_EQ(got.cols(), 2);
  int shrunk = 0;
  for (int r = 0; r < out; ++r)
    for (int g = 0; g < 2; ++g) {
      std::vector<float> w(W.row(r).data() + g * group, W.row(r).data() + (g + 1) * group);
      float absmax = 0;
      for (float v : w) absmax = std::max(absmax, std::abs(v));
      double best_err = std::numeric_limits<double>::infinity();
      float best = absmax;
      for (int i = 0; i < 10; ++i) {
        const float m = absmax * (1.0f - static_cast<float>(i) / 20.0f);
        std::vector<float> clamped;
        for (float v : w) clamped.push_back(std::min(std::max(v, -m), m));
        const auto q = pseudo_quantize_ref(clamped, bits);
        double err = 0;
        for (int t = 0; t < tokens; ++t) {
          double d = 0;
          for (int c = 0; c < group; ++c) d += double(X(t, g * group + c)) * (q[c] - w[c]);
          err += d * d;
        }
        if (err / tokens < best_err) {
          best_err = err / tokens;
          best = m;
        }
      }
      EXPECT_FLOAT_EQ(got(r, g), best) << "row " << r << " group " << g;
      shrunk += best < absmax;
    }
  EXPECT_GT(shrunk, 0);  // the search does clip somewhere at 3 bits
}

TEST(AwqClip, ApplyClampsPerGroup) {
  MatrixRM W = MatrixRM::Constant(2, 4, 5.0f);
  W(1, 3) = -5.0f;
  const MatrixRM m = (MatrixRM(2, 2) << 1, 2, 3, 4).finished();
  awq_apply_clip(W, m, awq_spec(4, 2));
  EXPECT_EQ(W(0, 1), 1.0f);
  EXPECT_EQ(W(0, 2), 2.0f);
  EXPECT_EQ(W(1, 0), 3.0f);
  EXPECT_EQ(W(1, 3), -4.0f);
}

}  // namespace
}  // namespace ptq
