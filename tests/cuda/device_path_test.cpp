// The GPU path (algorithms/device.hpp, calibrate/device_block.hpp,
// pipeline/quantize/quantize_device.hpp) against the CPU: GPTQ's column loop
// on every grid it takes, tiny's block stages, and tiny quantized end to
// end. Run on a GPU machine (docs/bench/cuda.md); skipped where none is seen.
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <variant>

#include "algorithms/backend.hpp"
#include "algorithms/cuda/cuda_backend.hpp"
#include "algorithms/device.hpp"
#include "algorithms/gptq.hpp"
#include "best_steps.hpp"
#include "calibrate/device_block.hpp"
#include "calibrate/model.hpp"
#include "cuda/compare.hpp"
#include "fixture_windows.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/quantize/quantize_device.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

class DevicePath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
    backend_ = make_cuda_backend({0});
    ASSERT_NE(backend_->device_group(), nullptr);
  }
  MatrixBackend& backend() { return *backend_; }
  DeviceOps& ops() { return backend_->device_group()->device(0); }

 private:
  std::unique_ptr<MatrixBackend> backend_;
};

using test::random_matrix;
using test::rel_diff;

MatrixRM to_host(DeviceOps& ops, const DeviceMatrix& d) {
  MatrixRM h(d.rows(), d.cols());
  ops.download(d, h);
  return h;
}

double equal_fraction(const CodeMatrix& a, const CodeMatrix& b) {
  return double((a.array() == b.array()).count()) / double(a.size());
}

TEST_F(DevicePath, GptqMatchesTheCpuOnEveryGridItTakes) {
  ops().set_math(DeviceMath::fp32);
  // Inputs of unequal scales and one dead column (never a nonzero input).
  MatrixRM x = random_matrix(4096, 256, 1);
  for (Eigen::Index c = 0; c < x.cols(); ++c) x.col(c) *= 0.2f + float(c % 7);
  x.col(37).setZero();
  const MatrixRM w = random_matrix(192, 256, 2);
  const Eigen::MatrixXd h = 2.0 / 4096 * x.cast<double>().transpose() * x.cast<double>();
  DeviceSums sums = ops().zero_sums(256, 256);
  ops().add_xtx(ops().upload(x), sums);
  const std::vector<QuantSpec> specs = {
      {.bits = 4, .granularity = Granularity::Group, .group_size = 64},
      // Groups narrower than the lazy block: the range is read without in-block updates.
      {.bits = 3,
       .symmetry = Symmetry::Symmetric,
       .granularity = Granularity::Group,
       .group_size = 32,
       .scale_storage = ScaleStorage::f16},
      // Groups wider than the lazy block: a block starts inside a group.
      {.bits = 4, .granularity = Granularity::Group, .group_size = 256},
      {.bits = 4, .granularity = Granularity::Channel},
      {.bits = 8,
       .symmetry = Symmetry::Symmetric,
       .granularity = Granularity::Group,
       .group_size = 128}};
  // Each grid with its min/max range, then with the MSE clip (clip.hpp) by
  // diag(H) at the best recipes' error norm 2.4, or uniformly at norm 2.
  std::vector<GptqConfig> configs;
  for (const QuantSpec& spec : specs)
    for (const ClipConfig& clip :
         {ClipConfig{}, ClipConfig{.method = ClipMethod::Mse, .weighting = ClipWeighting::Hessian},
          ClipConfig{.method = ClipMethod::Mse, .norm = 2.0}}) {
      GptqConfig config;
      config.spec = spec;
      config.clip = clip;
      configs.push_back(config);
    }
  for (const GptqConfig& config : configs) {
    const QuantSpec& spec = config.spec;
    ASSERT_TRUE(device_gptq_supports(config));
    const GptqResult cpu = gptq_quantize(w, h, config);
    const DeviceFactor factor = ops().gptq_factor(sums, 4096, config.damp, 6);
    ASSERT_TRUE(factor.ok);
    EXPECT_NEAR(factor.damping, cpu.damping, 1e-5 * cpu.damping);
    DeviceMatrix dw = ops().upload(w);
    const DeviceGptqResult gpu = ops().gptq(dw, factor, config, {});
    const double same = equal_fraction(gpu.quantized.codes, cpu.quantized.codes);
    std::printf("%d-bit group %d, clip %s: codes equal %.5f, loss GPU %.6g CPU %.6g, scales %.2e\n",
                spec.bits, spec.group_size,
                config.clip.method == ClipMethod::None ? "none"
                : config.clip.norm == 2.0              ? "mse norm 2"
                                                       : "mse diag(H)",
                same, gpu.loss, cpu.loss, rel_diff(gpu.quantized.scales, cpu.quantized.scales));
    EXPECT_GE(same, 0.995);
    EXPECT_NEAR(gpu.loss, cpu.loss, 1e-3 * cpu.loss);
    EXPECT_NEAR(gpu.weight_mse, cpu.weight_mse, 1e-3 * cpu.weight_mse);
    EXPECT_LT(rel_diff(gpu.quantized.scales, cpu.quantized.scales), 1e-3);
    EXPECT_EQ(gpu.quantized.zeros.size(), cpu.quantized.zeros.size());
    EXPECT_EQ(gpu.quantized.g_idx, cpu.quantized.g_idx);
    // The device weights are the codes' dequantized values, bit for bit.
    EXPECT_EQ(to_host(ops(), dw), gpu.quantized.dequantize());
    EXPECT_TRUE(to_host(ops(), dw).col(37).isZero()) << "the dead column";
  }
}

// GPTAQ's correction and target (algorithms/gptq.hpp) against the CPU's, on
// a quantized input that is the float input plus noise, so that D is not 0.
TEST_F(DevicePath, FloatOutputCorrectionMatchesTheCpu) {
  ops().set_math(DeviceMath::fp32);
  const MatrixRM f = random_matrix(4096, 256, 3);
  const MatrixRM q = f + 0.1f * random_matrix(4096, 256, 4);
  const MatrixRM w = random_matrix(192, 256, 5);
  const Eigen::MatrixXd qd = q.cast<double>(), fd = f.cast<double>();
  const Eigen::MatrixXd h = 2.0 / 4096 * qd.transpose() * qd;
  const Eigen::MatrixXd d = 2.0 / 4096 * qd.transpose() * (fd - qd);
  const MatrixRM cpu_m = float_output_correction(h, d, 3.0);
  const MatrixRM cpu_v = float_output_target(w, cpu_m);
  DeviceSums sums = ops().zero_sums(256, 256), cross = ops().zero_sums(256, 256);
  const DeviceMatrix dq = ops().upload(q);
  ops().add_xtx(dq, sums);
  ops().add_cross(dq, ops().upload(f), cross);
  const DeviceMatrix m = ops().float_output_correction(sums, cross, 4096, 3.0);
  const MatrixRM gpu_m = to_host(ops(), m);
  const MatrixRM gpu_v = to_host(ops(), ops().float_output_target(ops().upload(w), m));
  std::printf("GPTAQ correction M: %.2e, target W + W M^T: %.2e (max |M| %.3f)\n",
              rel_diff(gpu_m, cpu_m), rel_diff(gpu_v, cpu_v), cpu_m.cwiseAbs().maxCoeff());
  EXPECT_LT(rel_diff(gpu_m, cpu_m), 1e-4);
  EXPECT_LT(rel_diff(gpu_v, cpu_v), 1e-5);
}

struct TinyWindows {
  Model model = Model::open(test::fixture("models/tiny"));
  static constexpr int seq_len = 512;
  CalibrationSet calibration;

  explicit TinyWindows(int windows)
      : calibration(test::fixture_windows("tiny", windows, seq_len)) {}
};

TEST_F(DevicePath, TinyBlockStagesMatchTheCpu) {
  const TinyWindows tiny(4);
  const ModelConfig& c = tiny.model.config();
  const BlockWeights w = tiny.model.load_block(0);
  const MatrixRM x = embed_windows(tiny.model, tiny.calibration);
  for (DeviceMath math : {DeviceMath::fp32, DeviceMath::tf32}) {
    ops().set_math(math);
    const DeviceBlock block(ops(), c, w, TinyWindows::seq_len);
    const double bound = math == DeviceMath::fp32 ? 1e-5 : 5e-3;
    DeviceMatrix dx = ops().upload(x);
    MatrixRM cpu_x = x;
    for (const SublayerSpec& sublayer : block_sublayers) {
      const MatrixRM normed = sublayer_normed(c, w, sublayer, cpu_x);
      const MatrixRM inner = sublayer_inner(c, w, sublayer.sublayer, normed, TinyWindows::seq_len);
      const DeviceMatrix dnormed = block.normed(sublayer, dx);
      const DeviceMatrix dinner = block.inner(sublayer.sublayer, dnormed);
      const double n_diff = rel_diff(to_host(ops(), dnormed), normed);
      const double i_diff = rel_diff(to_host(ops(), dinner), inner);
      add_sublayer_output(c, w, sublayer, inner, cpu_x);
      block.add_output(sublayer, dinner, dx);
      const double x_diff = rel_diff(to_host(ops(), dx), cpu_x);
      std::printf("%s, sublayer %d: normed %.2e, inner %.2e, stream %.2e\n",
                  math == DeviceMath::fp32 ? "fp32" : "tf32", int(sublayer.sublayer), n_diff,
                  i_diff, x_diff);
      // The first norm reads the same stream on both; later ones, TF32's stream.
      EXPECT_LT(n_diff, sublayer.sublayer == Sublayer::attention ? 1e-6 : bound);
      EXPECT_LT(i_diff, bound);
      EXPECT_LT(x_diff, bound);
    }
  }
}

QuantizedLinears quantize_tiny(const TinyWindows& tiny, const Recipe& recipe,
                               MatrixBackend* backend) {
  std::optional<BackendScope> scope;
  if (backend != nullptr) scope.emplace(backend);
  return quantize_blocks(tiny.model, recipe, &tiny.calibration, QuantizeRunOptions{});
}

// The device path's codes against the CPU path's, and run to run.
void expect_cpu_codes_and_repeats(MatrixBackend& backend, const TinyWindows& tiny,
                                  const Recipe& recipe, DeviceMath math) {
  ASSERT_EQ(device_path_refusal(tiny.model.config(), recipe, {}), "");
  const QuantizedLinears cpu = quantize_tiny(tiny, recipe, nullptr);
  backend.device_group()->device(0).set_math(math);
  const QuantizedLinears run1 = quantize_tiny(tiny, recipe, &backend);
  const QuantizedLinears run2 = quantize_tiny(tiny, recipe, &backend);
  ASSERT_EQ(run1.size(), cpu.size());
  // q, k and v of block 0 read the same inputs on both devices: their codes
  // differ where a float32 (or TF32) rounding tips a weight. Every later
  // Linear reads inputs that earlier flips moved, so codes drift apart (the
  // perplexity, not the codes, is what agrees: docs/bench/cuda.md).
  double first = 1.0, worst = 1.0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const auto& a = std::get<QuantizedMatrix>(run1.get(i)->weight);
    const auto& b = std::get<QuantizedMatrix>(run2.get(i)->weight);
    const auto& want = std::get<QuantizedMatrix>(cpu.get(i)->weight);
    EXPECT_EQ(a.codes, b.codes) << "run to run, Linear " << i;
    EXPECT_EQ(a.scales, b.scales) << "run to run, Linear " << i;
    const double same = equal_fraction(a.codes, want.codes);
    worst = std::min(worst, same);
    if (i < 3) first = std::min(first, same);
  }
  std::printf(
      "tiny GPTQ W4 g128%s, 32 windows, %s: codes equal to the CPU's, fewest of block "
      "0's q/k/v %.4f, of all %.4f\n",
      recipe.target == RoundingTarget::FloatOutputs ? " clip + float target" : "",
      math == DeviceMath::fp32 ? "fp32" : "tf32", first, worst);
  EXPECT_GE(first, math == DeviceMath::fp32 ? 0.99 : 0.95);
}

// Plain GPTQ W4 g128, and with the best recipes' steps: the Hessian-weighted
// MSE clip and GPTQ toward the float model's outputs (block 0's q/k/v read
// the same inputs on both streams there, so GPTAQ's correction is 0 for them).
TEST_F(DevicePath, QuantizesTinyAsTheCpuDoesAndRepeats) {
  const TinyWindows tiny(32);
  Recipe plain;
  plain.spec = {.bits = 4, .granularity = Granularity::Group, .group_size = 128};
  for (const Recipe& recipe : {plain, test::with_best_steps(plain)})
    for (DeviceMath math : {DeviceMath::fp32, DeviceMath::tf32})
      expect_cpu_codes_and_repeats(backend(), tiny, recipe, math);
}

// cuda:0,1 against cuda:0: the Hessians are all-reduced in another order of
// double additions and each GPU rounds half the rows, whose trailing GEMMs
// cuBLAS may tile otherwise; block 0's q/k/v read the same inputs on both.
// Run to run, the two GPUs give the same bytes.
TEST(DevicePathOnTwoGpus, QuantizesTinyAsOneGpuDoesAndRepeats) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "fewer than 2 GPUs on this machine";
  const TinyWindows tiny(32);
  Recipe recipe;
  recipe.spec = {.bits = 4, .granularity = Granularity::Group, .group_size = 128};
  const auto one = make_cuda_backend({0}), two = make_cuda_backend({0, 1});
  ASSERT_EQ(two->device_group()->size(), 2);
  one->device_group()->device(0).set_math(DeviceMath::fp32);
  for (int i = 0; i < 2; ++i) two->device_group()->device(i).set_math(DeviceMath::fp32);
  const QuantizedLinears want = quantize_tiny(tiny, recipe, one.get());
  const QuantizedLinears run1 = quantize_tiny(tiny, recipe, two.get());
  const QuantizedLinears run2 = quantize_tiny(tiny, recipe, two.get());
  ASSERT_EQ(run1.size(), want.size());
  double first = 1.0, worst = 1.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& a = std::get<QuantizedMatrix>(run1.get(i)->weight);
    const auto& b = std::get<QuantizedMatrix>(run2.get(i)->weight);
    EXPECT_EQ(a.codes, b.codes) << "run to run, Linear " << i;
    EXPECT_EQ(a.scales, b.scales) << "run to run, Linear " << i;
    const double same =
        equal_fraction(a.codes, std::get<QuantizedMatrix>(want.get(i)->weight).codes);
    worst = std::min(worst, same);
    if (i < 3) first = std::min(first, same);
  }
  std::printf(
      "tiny GPTQ W4 g128, 32 windows, fp32: codes on 2 GPUs equal to 1 GPU's, fewest of "
      "block 0's q/k/v %.4f, of all %.4f\n",
      first, worst);
  EXPECT_GE(first, 0.99);
}

}  // namespace
}  // namespace ptq
