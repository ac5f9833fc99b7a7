// The GPU path's driver (pipeline/quantize/quantize_device.cpp and
// calibrate/device_block.cpp) on a DeviceOps whose "device" is host memory
// and whose kernels are the CPU's own, in the CPU path's order: it must give
// the CPU path's bytes, with the stage inputs kept or recomputed and with
// resume checkpoints. So CI, which has no GPU, checks the driver's steps; the
// CUDA kernels are checked against the CPU on a GPU (tests/cuda).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <utility>
#include <variant>

#include "algorithms/device.hpp"
#include "algorithms/gptq.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "best_steps.hpp"
#include "calibrate/block.hpp"
#include "calibrate/model.hpp"
#include "fixture_windows.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/quantize/quantize_device.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

class HostOps final : public DeviceOps {
 public:
  explicit HostOps(std::uint64_t free) : free_(free) {}

  void set_math(DeviceMath) override {}
  DeviceMath math() const override { return DeviceMath::fp32; }
  std::uint64_t peak_bytes() override { return 0; }
  DeviceMatrix allocate(Eigen::Index rows, Eigen::Index cols) override {
    return make<float>(rows, cols);
  }
  DeviceSums zero_sums(Eigen::Index rows, Eigen::Index cols) override {
    return make<double>(rows, cols);
  }
  DeviceMatrix upload(const Eigen::Ref<const MatrixRM>& host) override {
    DeviceMatrix d = allocate(host.rows(), host.cols());
    map(d) = host;
    return d;
  }
  void download(const DeviceMatrix& from, Eigen::Ref<MatrixRM> to) override { to = map(from); }

  void linear(const DeviceMatrix& x, const DeviceMatrix& w, const DeviceMatrix& b, DeviceMatrix& y,
              GemmOutput mode) override {
    const VectorF bias = b.empty() ? VectorF() : VectorF(map(b).transpose());
    MatrixRM out = map(y);
    if (mode == GemmOutput::accumulate)
      linear_accumulate(map(x), map(w), bias, out);
    else
      linear_forward(map(x), map(w), bias, out);
    map(y) = out;
  }
  void rms_norm(const DeviceMatrix& x, const DeviceMatrix& w, float eps,
                DeviceMatrix& out) override {
    MatrixRM h = map(x);
    rms_norm_rows(h, map(w).transpose(), eps);
    map(out) = h;
  }
  void rope(DeviceMatrix& x, const DeviceMatrix& cos, const DeviceMatrix& sin,
            int head_dim) override {
    MatrixRM m = map(x);
    apply_rope(m, map(cos), map(sin), static_cast<int>(cos.rows()), head_dim);
    map(x) = m;
  }
  void causal_attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v,
                        const AttentionShape& shape, DeviceMatrix& out) override {
    MatrixRM o;
    ptq::causal_attention(map(q), map(k), map(v), shape, o);
    map(out) = o;
  }
  void gated_activation(DeviceMatrix& gate, const DeviceMatrix& up, bool silu) override {
    ModelConfig c;
    c.activation = silu ? Activation::silu : Activation::gelu_tanh;
    MatrixRM g = map(gate);
    ptq::gated_activation(c, g, map(up));
    map(gate) = g;
  }
  // InputStats::add's order: float32 upper triangles of 2048-row chunks
  // added into double.
  void add_xtx(const DeviceMatrix& x, DeviceSums& sums) override {
    const MatrixRM m = map(x);
    Eigen::Map<Eigen::MatrixXd> total(sums.data(), sums.rows(), sums.cols());
    Eigen::MatrixXf partial = Eigen::MatrixXf::Zero(m.cols(), m.cols());
    for (Eigen::Index r0 = 0; r0 < m.rows(); r0 += 2048) {
      parallel_xtx_upper(m.middleRows(r0, std::min<Eigen::Index>(2048, m.rows() - r0)), partial);
      total += partial.cast<double>();
    }
  }
  DeviceFactor gptq_factor(const DeviceSums& sums, std::int64_t tokens, double damp,
                           int max_damping_retries) override {
    GptqConfig config;
    config.damp = damp;
    config.max_damping_retries = max_damping_retries;
    GptqHessian prepared = prepare_hessian(hessian(sums, tokens), config);
    DeviceFactor f{allocate(1, 1),
                   {},
                   prepared.damping,
                   prepared.damping_retries,
                   prepared.status == GptqStatus::Ok};
    factors_[f.U.data()] = std::move(prepared);
    return f;
  }
  // quantize_toward's steps.
  DeviceGptqResult gptq(DeviceMatrix& w, const DeviceFactor& factor, const GptqConfig& config,
                        const DeviceMatrix& target) override {
    const MatrixRM original = map(w);
    GptqResult r = gptq_quantize(target.empty() ? original : MatrixRM(map(target)),
                                 factors_.at(factor.U.data()), config);
    map(w) = r.quantized.dequantize();
    return {std::move(r.quantized), r.loss, weight_mse(original, map(w))};
  }
  // FloatOutputCross's order.
  void add_cross(const DeviceMatrix& q, const DeviceMatrix& f, DeviceSums& sums) override {
    FloatOutputCross::add_to(
        Eigen::Map<FloatOutputCross::Sums>(sums.data(), sums.rows(), sums.cols()), map(q), map(f));
  }
  DeviceMatrix float_output_correction(const DeviceSums& sums, const DeviceSums& cross,
                                       std::int64_t tokens, double target_damp) override {
    return upload(FloatOutputCross::correction(
        hessian(sums, tokens),
        Eigen::Map<const FloatOutputCross::Sums>(cross.data(), cross.rows(), cross.cols()), tokens,
        target_damp));
  }
  DeviceMatrix float_output_target(const DeviceMatrix& w, const DeviceMatrix& correction) override {
    return upload(ptq::float_output_target(map(w), map(correction)));
  }

 protected:
  std::uint64_t unused_bytes() override { return free_; }
  std::uint64_t held_bytes() override { return *held_; }

 private:
  // An array of host memory counted as held until its last copy goes.
  template <class T>
  DeviceArray<T> make(Eigen::Index rows, Eigen::Index cols) {
    const auto bytes =
        static_cast<std::uint64_t>(std::max<Eigen::Index>(rows * cols, 1)) * sizeof(T);
    *held_ += bytes;
    return {std::shared_ptr<T>(new T[bytes / sizeof(T)](),
                               [held = held_, bytes](T* p) {
                                 *held -= bytes;
                                 delete[] p;
                               }),
            rows, cols};
  }
  static Eigen::Map<MatrixRM> map(const DeviceMatrix& d) { return {d.data(), d.rows(), d.cols()}; }
  // gptq_hessian of the sums' mean, their upper triangle mirrored (InputStats').
  static Eigen::MatrixXd hessian(const DeviceSums& sums, std::int64_t tokens) {
    Eigen::MatrixXd h = Eigen::Map<const Eigen::MatrixXd>(sums.data(), sums.rows(), sums.cols());
    h.triangularView<Eigen::StrictlyLower>() = h.transpose().triangularView<Eigen::StrictlyLower>();
    return gptq_hessian(h / static_cast<double>(tokens));
  }

  std::uint64_t free_;
  std::shared_ptr<std::atomic<std::uint64_t>> held_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  std::map<const float*, GptqHessian> factors_;
};

// Several HostOps as one host's devices; the all-reduce adds device 0's sums,
// then device 1's, ..., the order in which one device adds its batches.
class HostGroup final : public DeviceGroup {
 public:
  HostGroup(int size, std::uint64_t free) {
    for (int i = 0; i < size; ++i) ops_.push_back(std::make_unique<HostOps>(free));
  }
  int size() const override { return static_cast<int>(ops_.size()); }
  DeviceOps& device(int i) override { return *ops_[static_cast<std::size_t>(i)]; }
  void all_reduce(std::span<DeviceSums> sums) override {
    Eigen::MatrixXd total = map(sums[0]);
    for (std::size_t i = 1; i < sums.size(); ++i) total += map(sums[i]);
    for (DeviceSums& s : sums) map(s) = total;
  }
  void broadcast_rows(std::span<DeviceMatrix> x, Eigen::Index first, Eigen::Index count,
                      int root) override {
    const std::size_t from = static_cast<std::size_t>(root);
    for (std::size_t i = 0; i < x.size(); ++i)
      if (i != from)
        std::copy_n(x[from].data() + first * x[from].cols(), count * x[from].cols(),
                    x[i].data() + first * x[i].cols());
  }

 private:
  static Eigen::Map<Eigen::MatrixXd> map(const DeviceSums& s) {
    return {s.data(), s.rows(), s.cols()};
  }
  std::vector<std::unique_ptr<HostOps>> ops_;
};

struct TinyRun {
  Model model = Model::open(test::fixture("models/tiny"));
  CalibrationSet calibration = test::fixture_windows("tiny", 6, 128);
  Recipe recipe;

  TinyRun() { recipe.spec = {.bits = 4, .granularity = Granularity::Group, .group_size = 64}; }
};

// The same codes, scales and zeros; GPTQ's loss equal, or within the relative
// difference given (a sum of per-device sums differs in its last bits).
void expect_same_linears(const QuantizedLinears& got, const QuantizedLinears& want,
                         double loss_rel = 0) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto a = got.get(i), b = want.get(i);
    ASSERT_EQ(linear_key_text(a->key()), linear_key_text(b->key()));
    const auto& qa = std::get<QuantizedMatrix>(a->weight);
    const auto& qb = std::get<QuantizedMatrix>(b->weight);
    EXPECT_EQ(qa.codes, qb.codes) << linear_key_text(b->key());
    ASSERT_EQ(qa.scales.rows(), qb.scales.rows());
    ASSERT_EQ(qa.scales.cols(), qb.scales.cols());
    EXPECT_TRUE((qa.scales.array() == qb.scales.array()).all()) << linear_key_text(b->key());
    EXPECT_EQ(qa.zeros, qb.zeros) << linear_key_text(b->key());
    EXPECT_LE(std::abs(got.report(i).gptq_loss - want.report(i).gptq_loss),
              loss_rel * want.report(i).gptq_loss)
        << linear_key_text(b->key());
  }
}

class DevicePathOnHost : public ::testing::TestWithParam<bool> {
 protected:
  // Plain GPTQ, or (parameter true) the best recipes' clip and float target.
  Recipe recipe(const TinyRun& tiny) const {
    return GetParam() ? test::with_best_steps(tiny.recipe) : tiny.recipe;
  }
};

INSTANTIATE_TEST_SUITE_P(PlainAndClipGptaq, DevicePathOnHost, ::testing::Bool());

TEST_P(DevicePathOnHost, GivesTheCpuPathsBytesWithTheStreamSpilledOrStageInputsRecomputed) {
  const TinyRun tiny;
  const Recipe recipe = this->recipe(tiny);
  ASSERT_EQ(device_path_refusal(tiny.model.config(), recipe, {}), "");
  QuantizeRunOptions options;
  options.batch_windows = 4;  // a full batch and a partial one
  const QuantizedLinears cpu = quantize_blocks(tiny.model, recipe, &tiny.calibration, options);
  // Under 1 GiB free the stream is spilled to host memory (the working set
  // counts 1 GiB of attention scores), as it is under a limit of 1/2 GiB with
  // 1 TiB free; with none free, the attention context and hidden state are
  // computed again too.
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  for (const auto& [free, limit] :
       {std::pair{kGiB << 10, std::uint64_t{0}}, std::pair{kGiB / 2, std::uint64_t{0}},
        std::pair{kGiB << 10, kGiB / 2}, std::pair{std::uint64_t{0}, std::uint64_t{0}}}) {
    SCOPED_TRACE(std::to_string(free) + " bytes free, limit " + std::to_string(limit));
    HostOps ops(free);
    ops.limit_memory(limit);
    SingleDevice one(ops);
    bool spilled = false;
    const QuantizeProgress progress{[&](const std::string& line) {
      spilled = spilled || line.find("stays in host memory") != std::string::npos;
    }};
    expect_same_linears(
        quantize_blocks_on_device(one, tiny.model, recipe, tiny.calibration, options, progress),
        cpu);
    EXPECT_EQ(spilled, std::min(free, limit == 0 ? free : limit) < kGiB);
  }
}

// Data-parallel: each device adds its own whole batches and the all-reduce
// adds the devices in order, so with a batch a device the Hessians are the
// CPU path's; each device rounds a share of the rows, broadcast to the others.
// Shares start at multiples of GPTQ's row chunk, so every chunk's products are
// the CPU path's: the same bytes on 2 devices and on 3, whose shares of tiny's
// 256 rows are uneven (64, 64, 128; of its 128 k/v rows 0, 64, 64). Before
// that alignment a share's chunks straddled the CPU's and, with AVX-512 GEMM
// kernels, codes differed. GPTQ's loss is a sum of the shares' sums (last bits).
TEST_P(DevicePathOnHost, GivesTheCpuPathsBytesOnSeveralDevices) {
  const TinyRun tiny;
  const Recipe recipe = this->recipe(tiny);
  for (const int devices : {2, 3}) {
    QuantizeRunOptions options;
    options.batch_windows = 6 / devices;
    const QuantizedLinears cpu = quantize_blocks(tiny.model, recipe, &tiny.calibration, options);
    for (std::uint64_t free : {std::uint64_t{1} << 40, std::uint64_t{0}}) {
      SCOPED_TRACE(std::to_string(devices) + " devices, " + std::to_string(free) + " bytes free");
      HostGroup group(devices, free);
      expect_same_linears(
          quantize_blocks_on_device(group, tiny.model, recipe, tiny.calibration, options, {}), cpu,
          1e-12);
    }
  }
}

TEST_P(DevicePathOnHost, ResumesFromItsCheckpointsWithTheSameBytes) {
  const TinyRun tiny;
  const Recipe recipe = this->recipe(tiny);
  const std::filesystem::path dir =
      test::temp_dir(GetParam() ? "device_path_resume_gptaq" : "device_path_resume");
  QuantizeRunOptions options;
  options.checkpoint_dir = dir;
  options.activation_checkpoint_seconds = 0;  // the stream after every block
  HostGroup group(2, std::uint64_t{1} << 40);  // the stream saved from both devices' shares
  const QuantizedLinears whole =
      quantize_blocks_on_device(group, tiny.model, recipe, tiny.calibration, options, {});
  // As if interrupted during the last block: its file is gone.
  std::filesystem::remove(dir / ("block_" + std::to_string(tiny.model.num_layers() - 1) + ".h5"));
  options.resume = Resume::yes;
  std::vector<std::string> log;
  const QuantizedLinears resumed =
      quantize_blocks_on_device(group, tiny.model, recipe, tiny.calibration, options,
                                {[&](const std::string& line) { log.push_back(line); }});
  EXPECT_NE(std::find(log.begin(), log.end(),
                      "resuming after block " + std::to_string(tiny.model.num_layers() - 2)),
            log.end());
  expect_same_linears(resumed, whole);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ptq
