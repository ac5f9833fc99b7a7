// DeviceOps (algorithms/device.hpp) on one GPU: stream-ordered allocations
// from CUDA's memory pool, cuBLAS GEMMs in float32 or TF32, ptq's kernels
// (kernels.cu) for the elementwise stages and GPTQ's column loop, cuSOLVER for
// the factor. Every call runs on the context's one stream.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "algorithms/cuda/cuda_context.hpp"
#include "algorithms/cuda/kernels.hpp"

namespace ptq::cuda {

namespace {

class CudaDevice final : public DeviceOps {
 public:
  explicit CudaDevice(Context& c);

  void set_math(DeviceMath math) override { math_ = math; }
  DeviceMath math() const override { return math_; }
  std::uint64_t peak_bytes() override { return pool_attribute(cudaMemPoolAttrUsedMemHigh); }
  DeviceMatrix allocate(Eigen::Index rows, Eigen::Index cols) override {
    return {allocate_memory<float>(rows * cols), rows, cols};
  }
  DeviceSums zero_sums(Eigen::Index rows, Eigen::Index cols) override;
  DeviceMatrix upload(const Eigen::Ref<const MatrixRM>& host) override;
  void download(const DeviceMatrix& from, Eigen::Ref<MatrixRM> to) override;

  void linear(const DeviceMatrix& x, const DeviceMatrix& w, const DeviceMatrix& b, DeviceMatrix& y,
              GemmOutput mode) override;
  void rms_norm(const DeviceMatrix& x, const DeviceMatrix& w, float eps,
                DeviceMatrix& out) override;
  void rope(DeviceMatrix& x, const DeviceMatrix& cos, const DeviceMatrix& sin,
            int head_dim) override;
  void causal_attention(const DeviceMatrix& q, const DeviceMatrix& k, const DeviceMatrix& v,
                        const AttentionShape& shape, DeviceMatrix& out) override;
  void gated_activation(DeviceMatrix& gate, const DeviceMatrix& up, bool silu) override;

  void add_xtx(const DeviceMatrix& x, DeviceSums& sums) override;
  DeviceFactor gptq_factor(const DeviceSums& sums, std::int64_t tokens, double damp,
                           int max_damping_retries) override;
  DeviceGptqResult gptq(DeviceMatrix& w, const DeviceFactor& factor, const GptqConfig& config,
                        const DeviceMatrix& target) override;
  void add_cross(const DeviceMatrix& q, const DeviceMatrix& f, DeviceSums& sums) override;
  DeviceMatrix float_output_correction(const DeviceSums& sums, const DeviceSums& cross,
                                       std::int64_t tokens, double target_damp) override;
  DeviceMatrix float_output_target(const DeviceMatrix& w, const DeviceMatrix& correction) override;

 protected:
  std::uint64_t unused_bytes() override;
  std::uint64_t held_bytes() override { return pool_attribute(cudaMemPoolAttrUsedMemCurrent); }

 private:
  template <class T>
  std::shared_ptr<T> allocate_memory(Eigen::Index count) {
    c_.enter();
    void* p = nullptr;
    const auto bytes = std::max<std::size_t>(static_cast<std::size_t>(count) * sizeof(T), 1);
    c_.check(cudaMallocAsync(&p, bytes, c_.stream), "cudaMallocAsync");
    // The last copy may go on any thread, whose current device may be another.
    return std::shared_ptr<T>(static_cast<T*>(p), [stream = c_.stream, device = c_.device](T* q) {
      int current = 0;
      cudaGetDevice(&current);
      cudaSetDevice(device);
      cudaFreeAsync(q, stream);
      cudaSetDevice(current);
    });
  }
  std::uint64_t pool_attribute(cudaMemPoolAttr attribute) {
    cudaMemPool_t pool = nullptr;
    c_.check(cudaDeviceGetDefaultMemPool(&pool, c_.device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t value = 0;
    c_.check(cudaMemPoolGetAttribute(pool, attribute, &value), "cudaMemPoolGetAttribute");
    return value;
  }
  cublasComputeType_t compute() const {
    return math_ == DeviceMath::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  }
  // C (column-major [m, n], ldc) = alpha op(A) op(B) + beta C, float32 operands.
  void gemm(cublasOperation_t ta, cublasOperation_t tb, Eigen::Index m, Eigen::Index n,
            Eigen::Index k, float alpha, const float* a, Eigen::Index lda, const float* b,
            Eigen::Index ldb, float beta, float* c, Eigen::Index ldc, cublasComputeType_t type);
  void launched(const char* kernel) const { c_.check(cudaGetLastError(), kernel); }
  template <class T>
  std::vector<T> to_host(const T* device, std::size_t count);
  bool factor_with(const DeviceSums& sums, double tokens, DeviceFactor& f, double* a);
  // Cholesky factor of the column-major [n, n] a in place (lower); false when
  // a is not positive definite.
  bool cholesky(double* a, int n);
  DeviceMatrix copy(const DeviceMatrix& from);
  void copy_into(const DeviceMatrix& from, DeviceMatrix& to);  // of the same size

  Context& c_;
  DeviceMath math_ = DeviceMath::tf32;
  DeviceBuffer scores_, pointers_, work_, info_;
  std::vector<char> host_work_;
};

CudaDevice::CudaDevice(Context& c) : c_(c) {
  c_.enter();
  // Freed memory stays in the pool for the next block's arrays of the same sizes.
  cudaMemPool_t pool = nullptr;
  c_.check(cudaDeviceGetDefaultMemPool(&pool, c_.device), "cudaDeviceGetDefaultMemPool");
  std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
  c_.check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep),
           "cudaMemPoolSetAttribute");
}

std::uint64_t CudaDevice::unused_bytes() {
  c_.enter();
  std::size_t free = 0, total = 0;
  c_.check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  // The pool's memory that no array holds is free to the next allocation.
  return free + pool_attribute(cudaMemPoolAttrReservedMemCurrent) -
         pool_attribute(cudaMemPoolAttrUsedMemCurrent);
}

DeviceSums CudaDevice::zero_sums(Eigen::Index rows, Eigen::Index cols) {
  DeviceSums s{allocate_memory<double>(rows * cols), rows, cols};
  c_.check(
      cudaMemsetAsync(s.data(), 0, static_cast<std::size_t>(s.size()) * sizeof(double), c_.stream),
      "cudaMemsetAsync");
  return s;
}

DeviceMatrix CudaDevice::upload(const Eigen::Ref<const MatrixRM>& host) {
  DeviceMatrix d = allocate(host.rows(), host.cols());
  if (d.empty()) return d;
  const auto width = static_cast<std::size_t>(host.cols()) * sizeof(float);
  c_.check(
      cudaMemcpy2DAsync(d.data(), width, host.data(),
                        static_cast<std::size_t>(host.outerStride()) * sizeof(float), width,
                        static_cast<std::size_t>(host.rows()), cudaMemcpyHostToDevice, c_.stream),
      "cudaMemcpy2DAsync (to the GPU)");
  c_.sync();  // the host array may go once this returns
  return d;
}

void CudaDevice::download(const DeviceMatrix& from, Eigen::Ref<MatrixRM> to) {
  PTQ_ASSERT(from.rows() == to.rows() && from.cols() == to.cols());
  c_.enter();
  const auto width = static_cast<std::size_t>(to.cols()) * sizeof(float);
  c_.check(cudaMemcpy2DAsync(to.data(), static_cast<std::size_t>(to.outerStride()) * sizeof(float),
                             from.data(), width, width, static_cast<std::size_t>(to.rows()),
                             cudaMemcpyDeviceToHost, c_.stream),
           "cudaMemcpy2DAsync (from the GPU)");
  c_.sync();
}

template <class T>
std::vector<T> CudaDevice::to_host(const T* device, std::size_t count) {
  std::vector<T> host(count);
  c_.check(
      cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, c_.stream),
      "cudaMemcpyAsync (from the GPU)");
  c_.sync();
  return host;
}

void CudaDevice::gemm(cublasOperation_t ta, cublasOperation_t tb, Eigen::Index m, Eigen::Index n,
                      Eigen::Index k, float alpha, const float* a, Eigen::Index lda, const float* b,
                      Eigen::Index ldb, float beta, float* c, Eigen::Index ldc,
                      cublasComputeType_t type) {
  auto i = [](Eigen::Index v) { return static_cast<int>(v); };
  c_.check(
      cublasGemmEx(c_.blas, ta, tb, i(m), i(n), i(k), &alpha, a, CUDA_R_32F, i(lda), b, CUDA_R_32F,
                   i(ldb), &beta, c, CUDA_R_32F, i(ldc), type, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

void CudaDevice::linear(const DeviceMatrix& x, const DeviceMatrix& w, const DeviceMatrix& b,
                        DeviceMatrix& y, GemmOutput mode) {
  PTQ_ASSERT(x.cols() == w.cols() && y.rows() == x.rows() && y.cols() == w.rows());
  c_.enter();
  // Row-major y = x W^T is column-major y^T = W x^T (W row-major is W^T column-major).
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, w.rows(), x.rows(), x.cols(), 1.0f, w.data(), w.cols(), x.data(),
       x.cols(), mode == GemmOutput::accumulate ? 1.0f : 0.0f, y.data(), y.cols(), compute());
  if (!b.empty()) {
    add_bias(y.data(), b.data(), y.rows(), static_cast<int>(y.cols()), c_.stream);
    launched("add_bias");
  }
}

void CudaDevice::rms_norm(const DeviceMatrix& x, const DeviceMatrix& w, float eps,
                          DeviceMatrix& out) {
  PTQ_ASSERT(w.size() == x.cols() && out.rows() == x.rows() && out.cols() == x.cols());
  c_.enter();
  cuda::rms_norm(x.data(), w.data(), out.data(), x.rows(), static_cast<int>(x.cols()), eps,
                 c_.stream);
  launched("rms_norm");
}

void CudaDevice::rope(DeviceMatrix& x, const DeviceMatrix& cos, const DeviceMatrix& sin,
                      int head_dim) {
  PTQ_ASSERT(cos.cols() * 2 == head_dim && x.cols() % head_dim == 0);
  c_.enter();
  cuda::rope(x.data(), cos.data(), sin.data(), x.rows(), static_cast<int>(x.cols()), head_dim,
             static_cast<int>(cos.rows()), c_.stream);
  launched("rope");
}

void CudaDevice::causal_attention(const DeviceMatrix& q, const DeviceMatrix& k,
                                  const DeviceMatrix& v, const AttentionShape& shape,
                                  DeviceMatrix& out) {
  PTQ_ASSERT(out.rows() == q.rows() && out.cols() == q.cols() && k.rows() == q.rows());
  c_.enter();
  attention_on_device(c_, q.data(), k.data(), v.data(), out.data(), q.rows(), shape, compute(),
                      scores_, pointers_);
}

void CudaDevice::gated_activation(DeviceMatrix& gate, const DeviceMatrix& up, bool silu) {
  PTQ_ASSERT(gate.rows() == up.rows() && gate.cols() == up.cols());
  c_.enter();
  gated(gate.data(), up.data(), gate.size(), silu, c_.stream);
  launched("gated");
}

void CudaDevice::add_xtx(const DeviceMatrix& x, DeviceSums& sums) {
  const Eigen::Index n = x.cols();
  PTQ_ASSERT(sums.rows() == n && sums.cols() == n);
  c_.enter();
  DeviceMatrix part = allocate(n, n);
  // Row-major x [rows, n] is column-major x^T [n, rows]: x^T (x^T)^T = x^T x.
  gemm(CUBLAS_OP_N, CUBLAS_OP_T, n, n, x.rows(), 1.0f, x.data(), n, x.data(), n, 0.0f, part.data(),
       n, compute());
  add_float_into_double(sums.data(), part.data(), part.size(), c_.stream);
  launched("add_float_into_double");
}

bool CudaDevice::cholesky(double* a, int n) {
  int* info = info_.reserve<int>(1, c_.check);
  std::size_t device_bytes = 0, host_bytes = 0;
  c_.check(cusolverDnXpotrf_bufferSize(c_.solver, c_.params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F,
                                       a, n, CUDA_R_64F, &device_bytes, &host_bytes),
           "cusolverDnXpotrf_bufferSize");
  host_work_.resize(host_bytes);
  c_.check(cusolverDnXpotrf(c_.solver, c_.params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, a, n,
                            CUDA_R_64F, work_.reserve<char>(device_bytes, c_.check), device_bytes,
                            host_work_.data(), host_bytes, info),
           "cusolverDnXpotrf");
  return to_host(info, 1)[0] == 0;
}

DeviceMatrix CudaDevice::copy(const DeviceMatrix& from) {
  DeviceMatrix to = allocate(from.rows(), from.cols());
  copy_into(from, to);
  return to;
}

void CudaDevice::copy_into(const DeviceMatrix& from, DeviceMatrix& to) {
  PTQ_ASSERT(from.size() == to.size());
  c_.check(cudaMemcpyAsync(to.data(), from.data(), static_cast<std::size_t>(from.size()) * 4,
                           cudaMemcpyDeviceToDevice, c_.stream),
           "cudaMemcpyAsync");
}

void CudaDevice::add_cross(const DeviceMatrix& q, const DeviceMatrix& f, DeviceSums& sums) {
  const Eigen::Index n = q.cols();
  PTQ_ASSERT(f.rows() == q.rows() && f.cols() == n && sums.rows() == n && sums.cols() == n);
  c_.enter();
  DeviceMatrix diff = allocate(q.rows(), n), part = allocate(n, n);
  subtract(f.data(), q.data(), diff.data(), diff.size(), c_.stream);
  launched("subtract");
  // Column-major diff^T q (the row-major diff and q are diff^T and q^T
  // column-major) is row-major q^T diff.
  gemm(CUBLAS_OP_N, CUBLAS_OP_T, n, n, q.rows(), 1.0f, diff.data(), n, q.data(), n, 0.0f,
       part.data(), n, compute());
  add_float_into_double(sums.data(), part.data(), part.size(), c_.stream);
  launched("add_float_into_double");
}

DeviceMatrix CudaDevice::float_output_correction(const DeviceSums& sums, const DeviceSums& cross,
                                                 std::int64_t tokens, double target_damp) {
  const auto n = static_cast<int>(sums.rows());
  PTQ_ASSERT(sums.cols() == n && cross.rows() == n && cross.cols() == n);
  c_.enter();
  const auto t = static_cast<double>(tokens);
  const DeviceSums diag{allocate_memory<double>(n), 1, n};
  hessian_diagonal(sums.data(), t, n, diag.data(), c_.stream);
  launched("hessian_diagonal");
  double mean = 0;
  for (double d : to_host(diag.data(), static_cast<std::size_t>(n))) mean += d;
  mean /= n;
  const std::shared_ptr<double> a = allocate_memory<double>(Eigen::Index{n} * n);
  const std::shared_ptr<double> b = allocate_memory<double>(Eigen::Index{n} * n);
  damped_hessian(sums.data(), t, target_damp * (mean > 0 ? mean : 1.0), n, a.get(), c_.stream);
  launched("damped_hessian");
  cross_matrix(cross.data(), t, n, b.get(), c_.stream);
  launched("cross_matrix");
  // H + lambda I is positive definite: H is a Gram matrix and lambda > 0.
  PTQ_ASSERT(cholesky(a.get(), n));
  int* info = info_.reserve<int>(1, c_.check);
  c_.check(cusolverDnXpotrs(c_.solver, c_.params, CUBLAS_FILL_MODE_LOWER, n, n, CUDA_R_64F, a.get(),
                            n, CUDA_R_64F, b.get(), n, info),
           "cusolverDnXpotrs");
  PTQ_ASSERT(to_host(info, 1)[0] == 0);
  DeviceMatrix m = allocate(n, n);
  to_row_major_float(b.get(), n, m.data(), c_.stream);
  launched("to_row_major_float");
  return m;
}

DeviceMatrix CudaDevice::float_output_target(const DeviceMatrix& w,
                                             const DeviceMatrix& correction) {
  const Eigen::Index out = w.rows(), n = w.cols();
  PTQ_ASSERT(correction.rows() == n && correction.cols() == n);
  DeviceMatrix v = copy(w);
  // Row-major v += w M^T, as linear(): column-major v^T += M w^T.
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, out, n, 1.0f, correction.data(), n, w.data(), n, 1.0f, v.data(),
       n, CUBLAS_COMPUTE_32F);
  return v;
}

// One attempt at the factor with f.damping; a: [n, n] doubles of scratch.
bool CudaDevice::factor_with(const DeviceSums& sums, double tokens, DeviceFactor& f, double* a) {
  const auto n = static_cast<int>(sums.rows());
  reversed_damped_hessian(sums.data(), tokens, f.diag.data(), f.damping, n, a, c_.stream);
  launched("reversed_damped_hessian");
  if (!cholesky(a, n)) return false;
  int* info = info_.reserve<int>(1, c_.check);
  std::size_t device_bytes = 0, host_bytes = 0;
  c_.check(cusolverDnXtrtri_bufferSize(c_.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                       CUDA_R_64F, a, n, &device_bytes, &host_bytes),
           "cusolverDnXtrtri_bufferSize");
  host_work_.resize(host_bytes);
  c_.check(cusolverDnXtrtri(c_.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F,
                            a, n, work_.reserve<char>(device_bytes, c_.check), device_bytes,
                            host_work_.data(), host_bytes, info),
           "cusolverDnXtrtri");
  return to_host(info, 1)[0] == 0;  // else a zero pivot
}

DeviceFactor CudaDevice::gptq_factor(const DeviceSums& sums, std::int64_t tokens, double damp,
                                     int max_damping_retries) {
  const Eigen::Index n = sums.rows();
  PTQ_ASSERT(sums.cols() == n);
  c_.enter();
  DeviceFactor f;
  f.diag = DeviceSums{allocate_memory<double>(n), 1, n};
  hessian_diagonal(sums.data(), static_cast<double>(tokens), static_cast<int>(n), f.diag.data(),
                   c_.stream);
  launched("hessian_diagonal");
  const std::vector<double> diag = to_host(f.diag.data(), static_cast<std::size_t>(n));
  double sum = 0;
  for (double d : diag) {
    if (!std::isfinite(d))
      throw input_error("GPTQ Hessian (2 X^T X of the Linear's inputs)", "finite values",
                        "NaN or infinity: the calibration activations overflowed");
    sum += d == 0 ? 1.0 : d;  // a dead column's H_ii counts as 1
  }
  f.damping = damp * sum / static_cast<double>(n);
  const std::shared_ptr<double> a = allocate_memory<double>(n * n);
  for (f.damping_retries = 0;; ++f.damping_retries, f.damping *= 10) {
    f.ok = factor_with(sums, static_cast<double>(tokens), f, a.get());
    if (f.ok || f.damping_retries == max_damping_retries) break;
  }
  if (f.ok) {
    f.U = allocate(n, n);
    upper_factor(a.get(), static_cast<int>(n), f.U.data(), c_.stream);
    launched("upper_factor");
  }
  return f;
}

DeviceGptqResult CudaDevice::gptq(DeviceMatrix& w, const DeviceFactor& factor,
                                  const GptqConfig& config, const DeviceMatrix& target) {
  PTQ_ASSERT(factor.ok && device_gptq_supports(config) && factor.U.rows() == w.cols());
  c_.enter();
  const QuantSpec& spec = config.spec;
  const Eigen::Index out = w.rows(), n = w.cols();
  const int block_size = config.block_size;
  GptqGrid grid{spec.maxq(), spec.symmetry == Symmetry::Symmetric,
                spec.scale_storage == ScaleStorage::f16,
                spec.granularity == Granularity::Group ? spec.group_size : 0};
  if (config.clip.method == ClipMethod::Mse) {
    grid.clip_candidates = static_cast<int>(config.clip.max_shrink * config.clip.steps);
    grid.clip_steps = config.clip.steps;
    grid.clip_norm = static_cast<float>(config.clip.norm);
    if (config.clip.weighting == ClipWeighting::Hessian) grid.importance = factor.diag.data();
  }
  const auto groups = grid.group > 0 ? (n + grid.group - 1) / grid.group : Eigen::Index{1};
  const DeviceMatrix original = copy(w);
  if (!target.empty()) {
    PTQ_ASSERT(target.rows() == out && target.cols() == n);
    copy_into(target, w);
  }
  const DeviceMatrix scales = allocate(out, groups), zeros = allocate(out, groups);
  // Per-channel grids see W before dead columns are zeroed, as the reference's.
  if (grid.group == 0)
    row_grids(w.data(), out, static_cast<int>(n), grid, scales.data(), zeros.data(), c_.stream);
  zero_dead(w.data(), out, static_cast<int>(n), factor.diag.data(), c_.stream);
  launched("zero_dead");
  const std::shared_ptr<unsigned char> codes = allocate_memory<unsigned char>(out * n);
  const DeviceMatrix err = allocate(block_size, out);
  const DeviceSums loss = zero_sums(out, 1);
  for (Eigen::Index i1 = 0; i1 < n; i1 += block_size) {
    const auto count = static_cast<int>(std::min<Eigen::Index>(block_size, n - i1));
    gptq_columns({w.data(), out, static_cast<int>(n), static_cast<int>(i1), count, factor.U.data(),
                  grid, scales.data(), zeros.data(), codes.get(), err.data(), loss.data()},
                 c_.stream);
    launched("gptq_columns");
    const Eigen::Index right = n - i1 - count;
    if (right == 0) continue;
    // W[:, right] -= err^T U[block, right]; column-major: W^T[right] -= U^T[right, block] err.
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, right, out, count, -1.0f, factor.U.data() + i1 * n + i1 + count,
         n, err.data(), out, 1.0f, w.data() + i1 + count, n, CUBLAS_COMPUTE_32F);
  }
  DeviceGptqResult r;
  r.quantized.spec = spec;
  r.quantized.codes.resize(out, n);
  c_.check(cudaMemcpyAsync(r.quantized.codes.data(), codes.get(), static_cast<std::size_t>(out * n),
                           cudaMemcpyDeviceToHost, c_.stream),
           "cudaMemcpyAsync (from the GPU)");
  r.quantized.scales.resize(out, groups);
  r.quantized.zeros.resize(out, groups);
  download(scales, r.quantized.scales);
  download(zeros, r.quantized.zeros);
  r.quantized.g_idx.resize(static_cast<std::size_t>(n));
  for (Eigen::Index col = 0; col < n; ++col)
    r.quantized.g_idx[col] = grid.group > 0 ? static_cast<std::int32_t>(col / grid.group) : 0;
  for (double l : to_host(loss.data(), static_cast<std::size_t>(out))) r.loss += l;
  const DeviceSums errors = zero_sums(out, 1);
  squared_errors(original.data(), w.data(), out, static_cast<int>(n), errors.data(), c_.stream);
  launched("squared_errors");
  double total = 0;
  for (double e : to_host(errors.data(), static_cast<std::size_t>(out))) total += e;
  r.weight_mse = total / static_cast<double>(out * n);
  return r;
}

}  // namespace

std::unique_ptr<DeviceOps> make_device_ops(Context& c) { return std::make_unique<CudaDevice>(c); }

}  // namespace ptq::cuda
