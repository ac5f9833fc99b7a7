// The CUDA backend against the CPU and float64 references. Run on a GPU
// machine (docs/bench/cuda.md records a run); skipped where no GPU is seen.
#include "algorithms/cuda/cuda_backend.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "algorithms/attention.hpp"
#include "algorithms/backend.hpp"
#include "algorithms/gptq.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "calibrate/block.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "cuda/compare.hpp"
#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

// float32 products of k terms against float64 (and attention's float32
// softmax): a few ulps times sqrt(k).
constexpr double kGemmRelTolerance = 1e-5;
// GPTQ's factor is computed in double on both devices.
constexpr double kFactorRelTolerance = 1e-9;
// A block of small run on both devices: float32 sums in another order.
constexpr double kBlockRelTolerance = 1e-5;
// PROTOCOL.md: transformers' float32 logits, |diff| < 1e-3 (as on the CPU).
constexpr float kGoldenLogitsTolerance = 1e-3f;

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
    backend_ = make_cuda_backend({0});
  }
  MatrixBackend& gpu() { return *backend_; }

 private:
  std::unique_ptr<MatrixBackend> backend_;
};

using test::random_matrix;
using test::rel_diff;

TEST_F(Cuda, GemmMatchesFloat64ReferenceInBothLayoutsAndModes) {
  // Operands are blocks of larger matrices: row strides differ from widths.
  const MatrixRM a_full = random_matrix(700, 333, 1), b_full = random_matrix(520, 333, 2);
  const auto a = a_full.leftCols(300);
  for (GemmOp op : {GemmOp::plain, GemmOp::transposed}) {
    for (GemmOutput mode : {GemmOutput::overwrite, GemmOutput::accumulate}) {
      const MatrixRM b = op == GemmOp::transposed ? MatrixRM(b_full.leftCols(300))
                                                  : MatrixRM(b_full.leftCols(300).transpose());
      const Eigen::MatrixXd opb = op == GemmOp::transposed
                                      ? Eigen::MatrixXd(b.cast<double>().transpose())
                                      : Eigen::MatrixXd(b.cast<double>());
      const MatrixRM c0 = random_matrix(700, 520, 3);
      Eigen::MatrixXd expected = a.cast<double>() * opb;
      if (mode == GemmOutput::accumulate) expected += c0.cast<double>();
      MatrixRM c_wide = MatrixRM::Zero(700, 600);
      c_wide.leftCols(520) = c0;
      gpu().gemm(a, b, op, c_wide.leftCols(520), mode);
      MatrixRM cpu = c0;
      parallel_gemm(a, b, op, cpu, mode);
      EXPECT_LT(rel_diff(c_wide.leftCols(520), expected), kGemmRelTolerance);
      EXPECT_TRUE(c_wide.rightCols(80).isZero()) << "wrote outside C";
      std::printf("gemm op %d mode %d: GPU vs float64 %.2e, CPU vs float64 %.2e\n", int(op),
                  int(mode), rel_diff(c_wide.leftCols(520), expected), rel_diff(cpu, expected));
    }
  }
}

TEST_F(Cuda, BackendScopeRoutesParallelGemmAndIsReproducible) {
  const MatrixRM a = random_matrix(20000, 256, 4), b = random_matrix(384, 256, 5);
  MatrixRM first(20000, 384), second(20000, 384), direct(20000, 384);
  {
    const BackendScope scope(&gpu());
    parallel_gemm(a, b, GemmOp::transposed, first, GemmOutput::overwrite);
    parallel_gemm(a, b, GemmOp::transposed, second, GemmOutput::overwrite);
  }
  gpu().gemm(a, b, GemmOp::transposed, direct, GemmOutput::overwrite);
  EXPECT_EQ(0, std::memcmp(first.data(), second.data(), first.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(first.data(), direct.data(), first.size() * sizeof(float)));
  EXPECT_EQ(active_backend(), nullptr);
}

TEST_F(Cuda, XtxUpperMatchesFloat64AndLeavesTheLowerTriangle) {
  // More rows than one call takes (kRowsPerCall), so partial products are summed.
  const MatrixRM x = random_matrix(40000, 96, 6);
  Eigen::MatrixXf upper = Eigen::MatrixXf::Constant(96, 96, 7.0f);
  gpu().xtx_upper(x, upper);
  const Eigen::MatrixXd expected = x.cast<double>().transpose() * x.cast<double>();
  const Eigen::MatrixXd got = upper.cast<double>().triangularView<Eigen::Upper>();
  const Eigen::MatrixXd want = expected.triangularView<Eigen::Upper>();
  EXPECT_LT(rel_diff(got, want), kGemmRelTolerance);
  for (Eigen::Index j = 0; j < 96; ++j)
    for (Eigen::Index i = j + 1; i < 96; ++i) ASSERT_EQ(upper(i, j), 7.0f) << i << "," << j;
}

TEST_F(Cuda, CausalAttentionMatchesTheFloat64ReferenceAndRepeats) {
  // Grouped queries (4 per KV head), 3 sequences of a length no kernel tile divides.
  const AttentionShape shape{.seq_len = 300, .heads = 8, .kv_heads = 2, .head_dim = 64};
  const MatrixRM q = random_matrix(900, 512, 9), k = random_matrix(900, 128, 10),
                 v = random_matrix(900, 128, 11);
  MatrixRM expected, cpu, first(900, 512), second(900, 512);
  causal_attention_reference(q, k, v, shape, expected);
  causal_attention(q, k, v, shape, cpu);
  gpu().causal_attention(q, k, v, shape, first);
  gpu().causal_attention(q, k, v, shape, second);
  std::printf("attention: GPU vs float64 %.2e, CPU vs float64 %.2e\n", rel_diff(first, expected),
              rel_diff(cpu, expected));
  EXPECT_LT(rel_diff(first, expected), kGemmRelTolerance);
  EXPECT_EQ(0, std::memcmp(first.data(), second.data(), first.size() * sizeof(float)));
}

TEST_F(Cuda, GptqFactorAndCodesMatchTheCpu) {
  const MatrixRM x = random_matrix(4096, 256, 7), w = random_matrix(192, 256, 8);
  const Eigen::MatrixXd h = 2.0 / 4096 * x.cast<double>().transpose() * x.cast<double>();
  GptqConfig config;
  config.spec = {.bits = 4, .granularity = Granularity::Group, .group_size = 64};
  const GptqHessian cpu = prepare_hessian(h, config);
  GptqHessian gpu_factor;
  GptqResult gpu_result;
  {
    const BackendScope scope(&gpu());
    gpu_factor = prepare_hessian(h, config);
    gpu_result = gptq_quantize(w, gpu_factor, config);
  }
  ASSERT_EQ(gpu_factor.status, GptqStatus::Ok);
  EXPECT_LT(rel_diff(gpu_factor.U, cpu.U), kFactorRelTolerance);
  const GptqResult cpu_result = gptq_quantize(w, cpu, config);
  const auto same =
      (gpu_result.quantized.codes.array() == cpu_result.quantized.codes.array()).count();
  EXPECT_GE(double(same) / double(w.size()), 0.999)
      << "codes equal: " << same << " of " << w.size();

  // Not positive definite at any damping tried: both devices say so alike.
  Eigen::MatrixXd bad = h;
  bad(3, 3) = -1e6;
  config.max_damping_retries = 2;
  const GptqHessian cpu_bad = prepare_hessian(bad, config);
  const BackendScope scope(&gpu());
  const GptqHessian gpu_bad = prepare_hessian(bad, config);
  EXPECT_EQ(cpu_bad.status, GptqStatus::CholeskyFailed);
  EXPECT_EQ(gpu_bad.status, GptqStatus::CholeskyFailed);
  EXPECT_EQ(gpu_bad.damping_retries, cpu_bad.damping_retries);
}

// InputStats of each distinct Linear input, by the first role reading it.
class StatsCollector : public LinearObserver {
 public:
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    auto [it, added] =
        stats.try_emplace(roles.front(), static_cast<int>(x.cols()), StatsContent::hessian);
    it->second.add(x);
  }
  std::map<LinearRole, InputStats> stats;
};

struct BlockRun {
  MatrixRM output;
  StatsCollector collector;
};

BlockRun run_block0(const Model& model, const MatrixRM& x, int seq_len) {
  BlockRun run{x, {}};
  const WindowWalk walk{.seq_len = seq_len, .batch_windows = 4, .splits_before = {}};
  forward_windows(model.config(), model.load_block(0), run.output, walk, &run.collector,
                  StreamUpdate::advance);
  return run;
}

TEST_F(Cuda, SmallBlockOutputsAndHessiansMatchTheCpu) {
  const Model model = Model::open(test::fixture("models/small"));
  constexpr int seq_len = 512, windows = 8;
  std::vector<std::int32_t> ids = read_ids(test::fixture("goldens/small/calib_generic.ids"));
  ids.resize(seq_len * windows);
  const MatrixRM x = model.embed(ids);
  const BlockRun cpu = run_block0(model, x, seq_len);
  BlockRun gpu_run;
  {
    const BackendScope scope(&gpu());
    gpu_run = run_block0(model, x, seq_len);
  }
  const double out_diff = rel_diff(gpu_run.output, cpu.output);
  std::printf("small block 0, %d windows of %d: output max rel diff %.3e\n", windows, seq_len,
              out_diff);
  RecordProperty("output_max_rel_diff", std::to_string(out_diff));
  EXPECT_LT(out_diff, kBlockRelTolerance);
  ASSERT_EQ(gpu_run.collector.stats.size(), cpu.collector.stats.size());
  for (const auto& [role, stats] : cpu.collector.stats) {
    const double h_diff = rel_diff(gpu_run.collector.stats.at(role).xtx, stats.xtx);
    std::printf("  Hessian of %-5s input [%lld]: max rel diff %.3e\n",
                std::string(linear_role_name(role)).c_str(), (long long)stats.xtx.rows(), h_diff);
    EXPECT_LT(h_diff, kBlockRelTolerance) << linear_role_name(role);
  }
}

TEST_F(Cuda, SmallLogitsMatchTransformers) {
  const Model model = Model::open(test::fixture("models/small"));
  const std::vector<std::int32_t> ids = read_ids(test::fixture("goldens/small/logits_prompt.ids"));
  const std::vector<float> golden =
      test::read_f32(test::fixture("goldens/small/logits_prompt.f32"));
  const BackendScope scope(&gpu());
  const MatrixRM ours = logits(model, ids, static_cast<int>(ids.size()));
  ASSERT_EQ(static_cast<std::size_t>(ours.size()), golden.size());
  const Eigen::Map<const MatrixRM> expected(golden.data(), ours.rows(), ours.cols());
  const float err = (ours - expected).cwiseAbs().maxCoeff();
  std::printf("small logits on the GPU: max |ptq - transformers| %.2e\n", err);
  EXPECT_LT(err, kGoldenLogitsTolerance);
}

}  // namespace
}  // namespace ptq
