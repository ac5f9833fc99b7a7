// GPTQ against the unblocked double-precision reference (scalar_reference.cpp)
// and against properties that hold whatever the implementation.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <Eigen/QR>
#include <string>

#include "algorithms/gptq.hpp"
#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "scalar_reference.hpp"

namespace ptq {
namespace {

// Float64 differs from the reference only in summation order (~1e-16 relative),
// so a code could flip only for a weight within ~1e-14 steps of a rounding tie.
constexpr double kFloat64RelTolerance = 1e-9;
// Float32 (the production path, like the reference's torch math) rounds the
// running weights to ~6e-8 relative; a weight that lands on the other side of a
// rounding boundary changes that code and, through the error feedback, some
// later ones in its row. Measured on this data: no code differs and the loss
// agrees to 4e-7; the bounds leave room for a few flips on other platforms.
constexpr double kFloat32CodeMismatchFraction = 0.002;
constexpr double kFloat32LossRelTolerance = 1e-4;

// GPTQ minimises exactly this output error column by column; on these
// correlated inputs it is measured at 0.80 (2-bit, tensor grid) or lower.
constexpr double kMaxErrorRatioToRtn = 0.9;

constexpr int kOut = 80;  // two row tasks of 64: one full, one partial
constexpr int kIn = 320;  // blocks of 128, 128, 64
const std::vector<int> kDeadColumns = {5, 200};

struct Case {
  std::string name;
  QuantSpec spec;
  ColumnOrder order = ColumnOrder::Natural;
  GroupGrids grids = GroupGrids::Dynamic;
};

Case make_case(std::string name, int bits, Symmetry sym, Granularity granularity, int group,
               ColumnOrder order, GroupGrids grids = GroupGrids::Dynamic) {
  return {std::move(name), QuantSpec{bits, sym, granularity, group}, order, grids};
}

GptqConfig config_for(const Case& c, Precision precision) {
  GptqConfig config;
  config.spec = c.spec;
  config.order = c.order;
  config.group_grids = c.grids;
  config.precision = precision;
  return config;
}

struct Data {
  MatrixRM W = test::random_weights(kOut, kIn, 21);
  Eigen::MatrixXd H = test::correlated_hessian(kIn, 2 * kIn, 22, kDeadColumns);
};

const Data& data() {
  static const Data d;
  return d;
}

long count_mismatches(const QuantizedMatrix& q, const test::ReferenceResult& ref) {
  return (q.codes.cast<int>().array() != ref.codes.array()).count();
}

class GptqCases : public ::testing::TestWithParam<Case> {};

TEST_P(GptqCases, Float64MatchesUnblockedReference) {
  const GptqConfig config = config_for(GetParam(), Precision::Float64);
  const GptqResult result = gptq_quantize(data().W, data().H, config);
  const test::ReferenceResult ref = test::gptq_reference(data().W, data().H, config);
  ASSERT_EQ(result.status, GptqStatus::Ok);
  EXPECT_EQ(count_mismatches(result.quantized, ref), 0);
  EXPECT_EQ(result.quantized.g_idx, ref.g_idx);
  const Eigen::MatrixXd scales = result.quantized.scales.cast<double>();
  EXPECT_LE((scales - ref.scales).cwiseAbs().maxCoeff(), 1e-6 * ref.scales.maxCoeff());
  EXPECT_EQ(result.quantized.zeros.cast<double>(), ref.zeros);
  EXPECT_NEAR(result.loss, ref.loss, kFloat64RelTolerance * ref.loss);
}

TEST_P(GptqCases, Float32CloseToReference) {
  const GptqConfig config = config_for(GetParam(), Precision::Float32);
  const GptqResult result = gptq_quantize(data().W, data().H, config);
  const test::ReferenceResult ref = test::gptq_reference(data().W, data().H, config);
  ASSERT_EQ(result.status, GptqStatus::Ok);
  const double mismatch =
      static_cast<double>(count_mismatches(result.quantized, ref)) / (kOut * kIn);
  EXPECT_LE(mismatch, kFloat32CodeMismatchFraction);
  EXPECT_NEAR(result.loss, ref.loss, kFloat32LossRelTolerance * ref.loss);
  EXPECT_EQ(result.quantized.g_idx, ref.g_idx);
}

TEST_P(GptqCases, CodesInRangeAndDeadColumnsZero) {
  const GptqResult result =
      gptq_quantize(data().W, data().H, config_for(GetParam(), Precision::Float32));
  EXPECT_LE(result.quantized.codes.maxCoeff(), GetParam().spec.maxq());
  const MatrixRM Q = result.quantized.dequantize();
  for (int c : kDeadColumns) EXPECT_EQ(Q.col(c).cwiseAbs().maxCoeff(), 0.0f) << c;
  EXPECT_NEAR(result.weight_mse, weight_mse(data().W, Q), 1e-12);
}

TEST_P(GptqCases, LowerOutputErrorThanRtn) {
  const Case& c = GetParam();
  const GptqResult result = gptq_quantize(data().W, data().H, config_for(c, Precision::Float32));
  const MatrixRM rtn = rtn_quantize(data().W, c.spec).dequantize();
  const double gptq_err = output_error(data().W, result.quantized.dequantize(), data().H);
  const double rtn_err = output_error(data().W, rtn, data().H);
  EXPECT_LT(gptq_err, kMaxErrorRatioToRtn * rtn_err) << "gptq " << gptq_err << " rtn " << rtn_err;
}

TEST_P(GptqCases, IdentityHessianEqualsRtn) {
  const Case& c = GetParam();
  // H = I: every off-diagonal factor entry is 0, so no error is fed forward
  // and every column keeps its original weights.
  const Eigen::MatrixXd H = Eigen::MatrixXd::Identity(kIn, kIn);
  const GptqResult result = gptq_quantize(data().W, H, config_for(c, Precision::Float32));
  const QuantizedMatrix rtn = rtn_quantize(data().W, c.spec);
  EXPECT_EQ(result.quantized.codes, rtn.codes);
  EXPECT_EQ(result.quantized.scales, rtn.scales);
  EXPECT_EQ(result.quantized.zeros, rtn.zeros);
  EXPECT_EQ(result.quantized.g_idx, rtn.g_idx);  // equal diag: act-order keeps 0, 1, 2, ...
}

TEST_P(GptqCases, SameResultForOneOrTwoThreads) {
  GptqConfig config = config_for(GetParam(), Precision::Float32);
  config.rows_per_task = 8;
  const auto run = [&](int threads) {
    const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    return gptq_quantize(data().W, data().H, config);
  };
  const GptqResult one = run(1);
  const GptqResult two = run(2);
  EXPECT_EQ(one.quantized.codes, two.quantized.codes);
  EXPECT_EQ(one.quantized.scales, two.quantized.scales);
  EXPECT_EQ(one.quantized.zeros, two.quantized.zeros);
  EXPECT_EQ(one.loss, two.loss);
}

const Granularity kGroup = Granularity::Group;
const Granularity kChannel = Granularity::Channel;
const Symmetry kAsym = Symmetry::Asymmetric;
const Symmetry kSym = Symmetry::Symmetric;
const ColumnOrder kNatural = ColumnOrder::Natural;
const ColumnOrder kActOrder = ColumnOrder::ActivationOrder;

INSTANTIATE_TEST_SUITE_P(
    Configs, GptqCases,
    ::testing::Values(
        make_case("w4_pc", 4, kAsym, kChannel, 0, kNatural),
        make_case("w4_pc_actorder", 4, kAsym, kChannel, 0, kActOrder),
        make_case("w4_g128", 4, kAsym, kGroup, 128, kNatural),
        make_case("w4_g128_sym", 4, kSym, kGroup, 128, kNatural),
        make_case("w3_g128_actorder", 3, kAsym, kGroup, 128, kActOrder),
        make_case("w2_pc_sym", 2, kSym, kChannel, 0, kNatural),
        make_case("w8_pc", 8, kAsym, kChannel, 0, kNatural),
        // Groups that start inside a block read the lazily updated weights.
        make_case("w4_g32", 4, kAsym, kGroup, 32, kNatural),
        make_case("w3_g100_actorder", 3, kAsym, kGroup, 100, kActOrder),
        make_case("w4_g128_static_actorder", 4, kAsym, kGroup, 128, kActOrder, GroupGrids::Static),
        make_case("w3_g64_sym_static", 3, kSym, kGroup, 64, kNatural, GroupGrids::Static),
        make_case("w4_tensor", 4, kAsym, Granularity::Tensor, 0, kNatural)),
    [](const auto& info) { return info.param.name; });

// A symmetric indefinite H (eigenvalues 3.5 and -1.5, mean diagonal 1): damping
// 0.01, 0.1 and 1 leave it indefinite, 10 makes it positive definite.
Eigen::MatrixXd indefinite_hessian() {
  Eigen::MatrixXd H(2, 2);
  H << 1.0, 2.5, 2.5, 1.0;
  return H;
}

TEST(Gptq, CholeskyFailureRetriesWithMoreDamping) {
  const MatrixRM W = test::random_weights(3, 2, 31);
  GptqConfig config;
  const GptqResult result = gptq_quantize(W, indefinite_hessian(), config);
  EXPECT_EQ(result.status, GptqStatus::Ok);
  EXPECT_EQ(result.damping_retries, 3);
  EXPECT_NEAR(result.damping, 10.0, 1e-12);
}

TEST(Gptq, CholeskyFailureAfterAllRetriesFallsBackToRtn) {
  const MatrixRM W = test::random_weights(3, 2, 32);
  GptqConfig config;
  config.max_damping_retries = 2;
  const GptqResult result = gptq_quantize(W, indefinite_hessian(), config);
  EXPECT_EQ(result.status, GptqStatus::CholeskyFailed);
  EXPECT_EQ(result.damping_retries, 2);
  EXPECT_EQ(result.quantized.codes, rtn_quantize(W, config.spec).codes);
}

TEST(Gptq, ScaledHessianGivesSameCodesAndScaledLoss) {
  GptqConfig config;
  const GptqResult a = gptq_quantize(data().W, data().H, config);
  const GptqResult b = gptq_quantize(data().W, 4.0 * data().H, config);
  const double mismatch =
      static_cast<double>((a.quantized.codes.array() != b.quantized.codes.array()).count()) /
      (kOut * kIn);
  EXPECT_LE(mismatch, kFloat32CodeMismatchFraction);
  EXPECT_NEAR(b.loss, 4.0 * a.loss, kFloat32LossRelTolerance * b.loss);
}

TEST(Gptq, SharedPreparedHessianGivesSameResult) {
  GptqConfig config;
  config.order = ColumnOrder::ActivationOrder;
  const GptqHessian prepared = prepare_hessian(data().H, config);
  const GptqResult shared = gptq_quantize(data().W, prepared, config);
  const GptqResult direct = gptq_quantize(data().W, data().H, config);
  EXPECT_EQ(shared.quantized.codes, direct.quantized.codes);
  EXPECT_EQ(shared.loss, direct.loss);
  std::vector<int> dead;
  for (int c = 0; c < kIn; ++c) {
    if (prepared.dead[c]) dead.push_back(c);
  }
  EXPECT_EQ(dead, kDeadColumns);
}

TEST(Gptq, ProgressReachesEveryColumn) {
  GptqConfig config;
  std::int64_t last = 0;
  int calls = 0;
  config.progress = [&](std::int64_t done, std::int64_t total) {
    EXPECT_EQ(total, kIn);
    EXPECT_GT(done, last);
    last = done;
    ++calls;
  };
  gptq_quantize(data().W, data().H, config);
  EXPECT_EQ(last, kIn);
  EXPECT_EQ(calls, 3);  // blocks of 128, 128 and 64 columns
}

TEST(Gptq, BadInputsAreInputErrors) {
  GptqConfig config;
  try {
    gptq_quantize(data().W, Eigen::MatrixXd::Identity(kIn - 1, kIn - 1), config);
    FAIL() << "mismatched H accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gptq_quantize: H: expected [320, 320]"),
              std::string::npos)
        << e.what();
  }
  config.damp = 0;
  EXPECT_THROW(gptq_quantize(data().W, data().H, config), InputError);
  config = GptqConfig{};
  config.group_grids = GroupGrids::Static;  // with per-channel grids
  EXPECT_THROW(config.validate(), InputError);
}

// GPTAQ's target against the least-squares solution computed directly: inputs
// X (the float model's) and X~ = X + noise (the quantized model's), outputs X W^T.
struct TargetData {
  static constexpr int kTokens = 600, kFeatures = 48, kOutputs = 20;
  Eigen::MatrixXd x = test::random_weights(kTokens, kFeatures, 41).cast<double>();
  Eigen::MatrixXd xq = x + 0.05 * test::random_weights(kTokens, kFeatures, 42).cast<double>();
  MatrixRM w = test::random_weights(kOutputs, kFeatures, 31);
  // GPTQ's scale 2/n, which the target must not depend on.
  Eigen::MatrixXd hessian = 2.0 / kTokens * xq.transpose() * xq;
  Eigen::MatrixXd cross = 2.0 / kTokens * xq.transpose() * (x - xq);
};

TEST(FloatOutputTarget, IsTheLeastSquaresFitOfTheFloatOutputs) {
  const TargetData d;
  const MatrixRM target =
      float_output_target(d.w, float_output_correction(d.hessian, d.cross, 1e-9));
  // argmin_V |X W^T - X~ V^T|, by QR of X~ (no normal equations).
  const Eigen::MatrixXd fit =
      d.xq.colPivHouseholderQr().solve(d.x * d.w.cast<double>().transpose()).transpose();
  // Measured 2e-8 relative (float32 target); the correction itself is ~1 % of W.
  EXPECT_LE((target.cast<double>() - fit).cwiseAbs().maxCoeff(), 1e-6 * fit.cwiseAbs().maxCoeff());
  EXPECT_GT((fit - d.w.cast<double>()).cwiseAbs().maxCoeff(), 1e-3 * fit.cwiseAbs().maxCoeff());
  // Hence it reproduces the float outputs better than W itself does on X~.
  const Eigen::MatrixXd want = d.x * d.w.cast<double>().transpose();
  EXPECT_LT((d.xq * target.cast<double>().transpose() - want).norm(),
            (d.xq * d.w.cast<double>().transpose() - want).norm());
}

TEST(FloatOutputTarget, IsWWhenTheInputsAgreeAndShrinksWithDamping) {
  const TargetData d;
  const auto target = [&](const Eigen::MatrixXd& cross, double damp) {
    return float_output_target(d.w, float_output_correction(d.hessian, cross, damp));
  };
  EXPECT_TRUE(target(Eigen::MatrixXd::Zero(48, 48), 1.0) == d.w);
  const MatrixRM exact = target(d.cross, 1e-9);
  const MatrixRM damped = target(d.cross, 1.0);
  EXPECT_LT((damped - d.w).norm(), (exact - d.w).norm());
  EXPECT_GT((damped - d.w).norm(), 0.0f);
}

}  // namespace
}  // namespace ptq
