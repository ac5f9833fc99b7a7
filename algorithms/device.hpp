#pragma once
// Device-resident work: the GPU path of calibration and GPTQ (docs/gpu.md).
// Matrices stay in a backend's memory between calls, and DeviceOps runs on
// them what a Llama-family block and GPTQ need, so a block's activations,
// Hessians and weights never cross to the host. A backend that has such
// memory returns its devices, one or several of one host, as a DeviceGroup
// from MatrixBackend::device_group(); the CPU has none. As for the backend:
// deterministic on a given set of devices, run to run.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "algorithms/attention.hpp"
#include "algorithms/gptq.hpp"
#include "algorithms/matrix.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "algorithms/quantized_matrix.hpp"
#include "io/error.hpp"

namespace ptq {

// A row-major [rows, cols] array in device memory. Copies and row ranges share
// the memory, which goes back to the backend when the last of them goes; all
// of them must go before the backend does.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(std::shared_ptr<T> memory, Eigen::Index rows, Eigen::Index cols)
      : memory_(std::move(memory)), rows_(rows), cols_(cols) {}

  Eigen::Index rows() const { return rows_; }
  Eigen::Index cols() const { return cols_; }
  Eigen::Index size() const { return rows_ * cols_; }
  bool empty() const { return size() == 0; }
  T* data() const { return memory_.get(); }  // a device address

  // The same memory read as [rows, cols] (as many entries).
  DeviceArray reshaped(Eigen::Index rows, Eigen::Index cols) const {
    PTQ_ASSERT(rows * cols == size());
    return DeviceArray(memory_, rows, cols);
  }
  // Rows [first, first + count), in the same memory.
  DeviceArray middle_rows(Eigen::Index first, Eigen::Index count) const {
    PTQ_ASSERT(first >= 0 && count >= 0 && first + count <= rows_);
    return DeviceArray(std::shared_ptr<T>(memory_, memory_.get() + first * cols_), count, cols_);
  }

 private:
  std::shared_ptr<T> memory_;
  Eigen::Index rows_ = 0, cols_ = 0;
};
using DeviceMatrix = DeviceArray<float>;
using DeviceSums = DeviceArray<double>;

// How the device multiplies float32 matrices in the block's GEMMs, attention
// and X^T X: full float32 products, or TF32 inputs (10-bit mantissas) with
// float32 accumulation on the tensor cores. GPTQ's own updates stay float32.
enum class DeviceMath { fp32, tf32 };

// GPTQ's factor of one Linear input's Hessian H = 2 (sums / tokens) (the
// reference's 2/n X^T X), natural column order: prepare_hessian's result
// (algorithms/gptq.hpp), on the device.
struct DeviceFactor {
  DeviceMatrix U;      // [n, n]: upper, U^T U = (H + damping I)^-1, dead columns' H_ii = 1
  DeviceSums diag;     // [1, n]: H_ii; 0 marks a dead column
  double damping = 0;  // absolute, after retries
  int damping_retries = 0;
  bool ok = false;  // false: H + damping stayed not positive definite (U empty)
};

struct DeviceGptqResult {
  QuantizedMatrix quantized;  // on the host; g_idx by group of the natural order
  double loss = 0;            // GptqResult::loss
  double weight_mse = 0;      // against the weights given
};

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;

  virtual void set_math(DeviceMath math) = 0;
  virtual DeviceMath math() const = 0;
  // Device memory this backend may still take, in bytes: what no one holds,
  // and under a limit (limit_memory) no more than the limit less what this
  // backend's arrays hold.
  std::uint64_t free_bytes() {
    const std::uint64_t unused = unused_bytes();
    if (limit_ == 0) return unused;
    const std::uint64_t held = held_bytes();
    return std::min(unused, limit_ > held ? limit_ - held : 0);
  }
  // The GPU path plans its arrays (the stream kept or spilled, stage inputs
  // kept or recomputed) within `bytes` of this device; 0: all that is free.
  void limit_memory(std::uint64_t bytes) { limit_ = bytes; }
  // The most device memory this backend's arrays have held at once, in bytes
  // (its reusable buffers and the libraries' workspaces not counted).
  virtual std::uint64_t peak_bytes() = 0;

  virtual DeviceMatrix allocate(Eigen::Index rows, Eigen::Index cols) = 0;
  virtual DeviceSums zero_sums(Eigen::Index rows, Eigen::Index cols) = 0;
  virtual DeviceMatrix upload(const Eigen::Ref<const MatrixRM>& host) = 0;
  virtual void download(const DeviceMatrix& from, Eigen::Ref<MatrixRM> to) = 0;

  // The block's stages, as calibrate/block.hpp computes them on the CPU.
  // y = x W^T + b (overwrite; y already sized) or y += x W^T + b; b may be empty.
  virtual void linear(const DeviceMatrix& x, const DeviceMatrix& w, const DeviceMatrix& b,
                      DeviceMatrix& y, GemmOutput mode) = 0;
  // out = RMSNorm of x's rows times w (rms_norm_rows); out may be x.
  virtual void rms_norm(const DeviceMatrix& x, const DeviceMatrix& w, float eps,
                        DeviceMatrix& out) = 0;
  // Rotate-half RoPE of every head of x in place; cos and sin are
  // [seq_len, head_dim / 2] tables, row t at position t % seq_len.
  virtual void rope(DeviceMatrix& x, const DeviceMatrix& cos, const DeviceMatrix& sin,
                    int head_dim) = 0;
  // causal_attention's contract; out already sized. No soft-capping or window.
  virtual void causal_attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v,
                                const AttentionShape& shape, DeviceMatrix& out) = 0;
  // gate = act(gate) * up, act SiLU or GELU (tanh approximation).
  virtual void gated_activation(DeviceMatrix& gate, const DeviceMatrix& up, bool silu) = 0;

  // sums += x^T x: float32 products (by math()) added into double.
  virtual void add_xtx(const DeviceMatrix& x, DeviceSums& sums) = 0;
  // prepare_hessian (natural order) of H = 2 (sums / tokens), sums holding X^T
  // X over `tokens` rows; damp and retries as GptqConfig's.
  virtual DeviceFactor gptq_factor(const DeviceSums& sums, std::int64_t tokens, double damp,
                                   int max_damping_retries) = 0;
  // GPTQ's column loop (float32, natural order, lazy blocks of config's
  // block_size) onto config's grids and clip, which device_gptq_supports must
  // accept; factor.ok. It rounds `target` (GPTAQ's, float_output_target;
  // empty: w itself), w becomes the dequantized weights and weight_mse is
  // taken against w's.
  virtual DeviceGptqResult gptq(DeviceMatrix& w, const DeviceFactor& factor,
                                const GptqConfig& config, const DeviceMatrix& target) = 0;

  // GPTAQ's statistics (algorithms/gptq.hpp, target float_outputs): sums +=
  // q^T (f - q), q the quantized model's Linear input and f the float
  // model's, float32 products (by math()) added into double; row-major [n, n].
  virtual void add_cross(const DeviceMatrix& q, const DeviceMatrix& f, DeviceSums& sums) = 0;
  // float_output_correction of H = 2 (sums / tokens) and D = 2 (cross /
  // tokens), in double: M = (H + target_damp mean(diag H) I)^-1 D.
  virtual DeviceMatrix float_output_correction(const DeviceSums& sums, const DeviceSums& cross,
                                               std::int64_t tokens, double target_damp) = 0;
  // GPTAQ's target W + W M^T, float32 products.
  virtual DeviceMatrix float_output_target(const DeviceMatrix& w,
                                           const DeviceMatrix& correction) = 0;

 protected:
  // Device memory not in use by anyone, and held by this backend's arrays.
  virtual std::uint64_t unused_bytes() = 0;
  virtual std::uint64_t held_bytes() = 0;

 private:
  std::uint64_t limit_ = 0;
};

// The devices one run uses, each with its own DeviceOps and memory, and the
// collectives between them (NCCL on GPUs). Device i's arrays are passed at
// index i of a span; calls are made from one thread, each device's work
// ordered after what was asked of it before.
class DeviceGroup {
 public:
  virtual ~DeviceGroup() = default;

  virtual int size() const = 0;
  virtual DeviceOps& device(int i) = 0;
  // Every device's sums[i] becomes the sum over all devices (same bits on each).
  virtual void all_reduce(std::span<DeviceSums> sums) = 0;
  // Rows [first, first + count) of every device's x[i] become device root's.
  virtual void broadcast_rows(std::span<DeviceMatrix> x, Eigen::Index first, Eigen::Index count,
                              int root) = 0;
};

// A group of one: its collectives have nothing to do.
class SingleDevice final : public DeviceGroup {
 public:
  explicit SingleDevice(DeviceOps& ops) : ops_(ops) {}
  int size() const override { return 1; }
  DeviceOps& device(int) override { return ops_; }
  void all_reduce(std::span<DeviceSums>) override {}
  void broadcast_rows(std::span<DeviceMatrix>, Eigen::Index, Eigen::Index, int) override {}

 private:
  DeviceOps& ops_;
};

// Whether DeviceOps::gptq rounds onto `config`'s grids: uniform grids that
// include 0 (the GPTQ Quantizer's), per output channel or per dynamic group,
// codes that fit a byte, natural column order; the range the min/max or the
// MSE clip (clip.hpp), not a percentile.
inline bool device_gptq_supports(const GptqConfig& config) {
  const QuantSpec& spec = config.spec;
  return spec.range == RangeRule::IncludeZero && spec.granularity != Granularity::Tensor &&
         spec.bits <= 8 && config.order == ColumnOrder::Natural &&
         config.group_grids == GroupGrids::Dynamic && config.clip.method != ClipMethod::Percentile;
}

}  // namespace ptq
