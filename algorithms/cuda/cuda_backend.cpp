#include "algorithms/cuda/cuda_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "algorithms/cuda/cuda_context.hpp"
#include "algorithms/cuda/kernels.hpp"
#include "io/error.hpp"

namespace ptq {

using cuda::Checker;
using cuda::DeviceBuffer;

namespace {

// Rows of A per GEMM call (and of X per SYRK call): bounds the device memory
// a call takes; fixed, so the bits depend only on the shapes.
constexpr Eigen::Index kRowsPerCall = 16384;

class CudaBackend final : public MatrixBackend {
 public:
  // The dense kernels run on the first device; the GPU path uses them all.
  explicit CudaBackend(const std::vector<int>& devices)
      : ctx_(devices.at(0)),
        group_(cuda::make_device_group(ctx_, {devices.begin() + 1, devices.end()})),
        name_(ctx_.name) {
    if (devices.size() == 1) return;
    name_ += "; GPU path on cuda:";
    for (std::size_t i = 0; i < devices.size(); ++i)
      name_.append(i > 0 ? "," : "").append(std::to_string(devices[i]));
  }
  ~CudaBackend() override { cudaSetDevice(ctx_.device); }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return name_; }
  void gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b, GemmOp op_b,
            Eigen::Ref<MatrixRM> c, GemmOutput mode) override;
  void xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) override;
  void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                        const AttentionShape& shape, MatrixRM& out) override;
  bool lower_cholesky_inverse(Eigen::MatrixXd& a) override;
  DeviceGroup* device_group() override { return group_.get(); }

 private:
  void upload(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
              Eigen::Index stride);
  void download(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                Eigen::Index stride);
  int solver_info(const int* info);

  cuda::Context ctx_;
  std::mutex mutex_;  // one call at a time: the buffers are shared
  DeviceBuffer a_, b_, c_, work_, info_, scores_, pointers_;
  std::vector<char> host_work_;
  std::unique_ptr<DeviceGroup> group_;  // its arrays go before the context
  std::string name_;
};

// rows x cols floats, row stride `stride` on the host, packed on the device.
void CudaBackend::upload(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                         Eigen::Index stride) {
  const auto width = static_cast<std::size_t>(cols) * sizeof(float);
  ctx_.check(
      cudaMemcpy2DAsync(dst, width, src, static_cast<std::size_t>(stride) * sizeof(float), width,
                        static_cast<std::size_t>(rows), cudaMemcpyHostToDevice, ctx_.stream),
      "cudaMemcpy2DAsync (to the GPU)");
}

void CudaBackend::download(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                           Eigen::Index stride) {
  const auto width = static_cast<std::size_t>(cols) * sizeof(float);
  ctx_.check(
      cudaMemcpy2DAsync(dst, static_cast<std::size_t>(stride) * sizeof(float), src, width, width,
                        static_cast<std::size_t>(rows), cudaMemcpyDeviceToHost, ctx_.stream),
      "cudaMemcpy2DAsync (from the GPU)");
}

void CudaBackend::gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b,
                       GemmOp op_b, Eigen::Ref<MatrixRM> c, GemmOutput mode) {
  const std::lock_guard lock(mutex_);
  ctx_.enter();
  const bool transposed = op_b == GemmOp::transposed;
  const Eigen::Index m = a.rows(), k = a.cols(), n = c.cols();
  const Eigen::Index chunk = std::min(m, kRowsPerCall);
  float* db = b_.reserve<float>(static_cast<std::size_t>(b.size()), ctx_.check);
  float* da = a_.reserve<float>(static_cast<std::size_t>(chunk * k), ctx_.check);
  float* dc = c_.reserve<float>(static_cast<std::size_t>(chunk * n), ctx_.check);
  upload(db, b.data(), b.rows(), b.cols(), b.outerStride());
  const float alpha = 1.0f, beta = mode == GemmOutput::accumulate ? 1.0f : 0.0f;
  for (Eigen::Index r0 = 0; r0 < m; r0 += chunk) {
    const Eigen::Index rows = std::min(chunk, m - r0);
    upload(da, a.data() + r0 * a.outerStride(), rows, k, a.outerStride());
    float* c0 = c.data() + r0 * c.outerStride();
    if (mode == GemmOutput::accumulate) upload(dc, c0, rows, n, c.outerStride());
    // A packed row-major [r, c] matrix is the column-major [c, r] one, its
    // transpose: row-major C = A op(B) is column-major C^T = op(B)^T A^T.
    ctx_.check(cublasSgemm(ctx_.blas, transposed ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                           static_cast<int>(n), static_cast<int>(rows), static_cast<int>(k), &alpha,
                           db, static_cast<int>(transposed ? k : n), da, static_cast<int>(k), &beta,
                           dc, static_cast<int>(n)),
               "cublasSgemm");
    download(c0, dc, rows, n, c.outerStride());
  }
  ctx_.sync();
}

void CudaBackend::xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) {
  const std::lock_guard lock(mutex_);
  ctx_.enter();
  const Eigen::Index n = x.cols();
  const Eigen::Index chunk = std::max<Eigen::Index>(std::min(x.rows(), kRowsPerCall), 1);
  float* dx = a_.reserve<float>(static_cast<std::size_t>(chunk * n), ctx_.check);
  float* dc = c_.reserve<float>(static_cast<std::size_t>(n * n), ctx_.check);
  ctx_.check(cudaMemsetAsync(dc, 0, static_cast<std::size_t>(n * n) * sizeof(float), ctx_.stream),
             "cudaMemsetAsync");
  const float alpha = 1.0f, one = 1.0f;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += chunk) {
    const Eigen::Index rows = std::min(chunk, x.rows() - r0);
    upload(dx, x.data() + r0 * x.outerStride(), rows, n, x.outerStride());
    // Row-major x [rows, n] is column-major x^T [n, rows]: SYRK's A A^T = x^T x.
    ctx_.check(cublasSsyrk(ctx_.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(n),
                           static_cast<int>(rows), &alpha, dx, static_cast<int>(n), &one, dc,
                           static_cast<int>(n)),
               "cublasSsyrk");
  }
  // The caller's strictly lower triangle is not ours to write.
  Eigen::MatrixXf full(n, n);
  ctx_.check(cudaMemcpyAsync(full.data(), dc, static_cast<std::size_t>(n * n) * sizeof(float),
                             cudaMemcpyDeviceToHost, ctx_.stream),
             "cudaMemcpyAsync (from the GPU)");
  ctx_.sync();
  upper.triangularView<Eigen::Upper>() = full.triangularView<Eigen::Upper>();
}

void CudaBackend::causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                   const AttentionShape& s, MatrixRM& out) {
  const std::lock_guard lock(mutex_);
  ctx_.enter();
  float* dq = a_.reserve<float>(static_cast<std::size_t>(q.size() + 2 * k.size()), ctx_.check);
  float* dk = dq + q.size();
  float* dv = dk + k.size();
  float* dout = c_.reserve<float>(static_cast<std::size_t>(q.size()), ctx_.check);
  upload(dq, q.data(), q.rows(), q.cols(), q.cols());
  upload(dk, k.data(), k.rows(), k.cols(), k.cols());
  upload(dv, v.data(), v.rows(), v.cols(), v.cols());
  cuda::attention_on_device(ctx_, dq, dk, dv, dout, q.rows(), s, CUBLAS_COMPUTE_32F, scores_,
                            pointers_);
  download(out.data(), dout, out.rows(), out.cols(), out.cols());
  ctx_.sync();
}

// The LAPACK-style info a cuSOLVER call left on the device.
int CudaBackend::solver_info(const int* info) {
  int value = 0;
  ctx_.check(cudaMemcpyAsync(&value, info, sizeof value, cudaMemcpyDeviceToHost, ctx_.stream),
             "cudaMemcpyAsync (from the GPU)");
  ctx_.sync();
  return value;
}

bool CudaBackend::lower_cholesky_inverse(Eigen::MatrixXd& a) {
  const std::lock_guard lock(mutex_);
  ctx_.enter();
  const Eigen::Index n = a.rows();
  const auto bytes = static_cast<std::size_t>(a.size()) * sizeof(double);
  auto* da = c_.reserve<double>(static_cast<std::size_t>(a.size()), ctx_.check);
  int* info = info_.reserve<int>(1, ctx_.check);
  ctx_.check(cudaMemcpyAsync(da, a.data(), bytes, cudaMemcpyHostToDevice, ctx_.stream),
             "cudaMemcpyAsync (to the GPU)");
  std::size_t device_bytes = 0, host_bytes = 0;
  ctx_.check(cusolverDnXpotrf_bufferSize(ctx_.solver, ctx_.params, CUBLAS_FILL_MODE_LOWER, n,
                                         CUDA_R_64F, da, n, CUDA_R_64F, &device_bytes, &host_bytes),
             "cusolverDnXpotrf_bufferSize");
  host_work_.resize(host_bytes);
  ctx_.check(cusolverDnXpotrf(ctx_.solver, ctx_.params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, da,
                              n, CUDA_R_64F, work_.reserve<char>(device_bytes, ctx_.check),
                              device_bytes, host_work_.data(), host_bytes, info),
             "cusolverDnXpotrf");
  if (solver_info(info) != 0) return false;  // not positive definite
  ctx_.check(cusolverDnXtrtri_bufferSize(ctx_.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT,
                                         n, CUDA_R_64F, da, n, &device_bytes, &host_bytes),
             "cusolverDnXtrtri_bufferSize");
  host_work_.resize(host_bytes);
  ctx_.check(cusolverDnXtrtri(ctx_.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                              CUDA_R_64F, da, n, work_.reserve<char>(device_bytes, ctx_.check),
                              device_bytes, host_work_.data(), host_bytes, info),
             "cusolverDnXtrtri");
  if (solver_info(info) != 0) return false;  // a zero pivot
  ctx_.check(cudaMemcpyAsync(a.data(), da, bytes, cudaMemcpyDeviceToHost, ctx_.stream),
             "cudaMemcpyAsync (from the GPU)");
  ctx_.sync();
  return true;
}

}  // namespace

namespace cuda {

Context::Context(int device) : device(device), check(device) {
  const int count = cuda_device_count();
  if (device < 0 || device >= count)
    throw input_error(
        "--device cuda:" + std::to_string(device),
        count == 0 ? std::string("a CUDA GPU") : "a GPU index below " + std::to_string(count),
        count == 0 ? "no GPU (or no NVIDIA driver) on this machine" : "no such GPU");
  enter();
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  name = check.where() + " (" + prop.name + ")";
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cublasCreate(&blas), "cublasCreate");
  check(cublasSetStream(blas, stream), "cublasSetStream");
  // Float32 products unless a call asks for TF32, and no atomics: reproducible bits.
  check(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  check(cublasSetAtomicsMode(blas, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
  check(cusolverDnCreate(&solver), "cusolverDnCreate");
  check(cusolverDnSetStream(solver, stream), "cusolverDnSetStream");
  check(cusolverDnCreateParams(&params), "cusolverDnCreateParams");
}

Context::~Context() {
  cudaSetDevice(device);
  if (params != nullptr) cusolverDnDestroyParams(params);
  if (solver != nullptr) cusolverDnDestroy(solver);
  if (blas != nullptr) cublasDestroy(blas);
  if (stream != nullptr) cudaStreamDestroy(stream);
}

// Per (sequence, head) pair p of a chunk: S_p = scale Q_h K_g^T (cuBLAS,
// batched), the causal softmax in place (kernels.cu), O_h = S_p V_g. In the
// column-major terms cuBLAS uses, a row-major [t, c] block with row stride ld
// is its transpose: S^T = K Q^T and O^T = V^T S^T. Pairs go in chunks of at
// most 2^28 score entries (1 GiB).
void attention_on_device(const Context& c, const float* dq, const float* dk, const float* dv,
                         float* dout, std::int64_t rows, const AttentionShape& s,
                         cublasComputeType_t compute, DeviceBuffer& scores,
                         DeviceBuffer& pointers) {
  if (s.softcap > 0 || s.window > 0)  // Gemma's; the GPU path is for the Llama family yet
    throw input_error(c.check.where() + " attention", "no soft-capping or sliding window",
                      "a model that needs them (run it with --device cpu)");
  constexpr std::int64_t kScoreFloats = std::int64_t{1} << 28;
  const std::int64_t sequences = rows / s.seq_len, pairs = sequences * s.heads;
  const std::int64_t seq = s.seq_len, square = seq * seq;
  const std::int64_t chunk = std::clamp<std::int64_t>(kScoreFloats / square, 1, pairs);
  const int ldq = s.heads * s.head_dim, ldk = s.kv_heads * s.head_dim;
  float* dscores = scores.reserve<float>(static_cast<std::size_t>(chunk * square), c.check);
  // Per pair: K_g, Q_h, S_p, V_g, O_h.
  // (cuBLAS takes the operands' pointers without const in one array type.)
  std::vector<float*> host(static_cast<std::size_t>(5 * chunk));
  float** dptr = pointers.reserve<float*>(host.size(), c.check);
  const float scale = score_scale(s), one = 1.0f, zero = 0.0f;
  for (std::int64_t p0 = 0; p0 < pairs; p0 += chunk) {
    const std::int64_t n = std::min(chunk, pairs - p0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t seq_index = (p0 + i) / s.heads, head = (p0 + i) % s.heads;
      const std::int64_t kv = head / (s.heads / s.kv_heads), row0 = seq_index * seq;
      host[i] = const_cast<float*>(dk) + row0 * ldk + kv * s.head_dim;
      host[chunk + i] = const_cast<float*>(dq) + row0 * ldq + head * s.head_dim;
      host[2 * chunk + i] = dscores + i * square;
      host[3 * chunk + i] = const_cast<float*>(dv) + row0 * ldk + kv * s.head_dim;
      host[4 * chunk + i] = dout + row0 * ldq + head * s.head_dim;
    }
    c.check(cudaMemcpyAsync(dptr, host.data(), host.size() * sizeof(float*), cudaMemcpyHostToDevice,
                            c.stream),
            "cudaMemcpyAsync (to the GPU)");
    const int sq = s.seq_len, d = s.head_dim, batch = static_cast<int>(n);
    auto out = [&](int slot) { return reinterpret_cast<void* const*>(dptr + slot * chunk); };
    auto in = [&](int slot) { return reinterpret_cast<const void* const*>(dptr + slot * chunk); };
    c.check(cublasGemmBatchedEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, sq, sq, d, &scale, in(0),
                                CUDA_R_32F, ldk, in(1), CUDA_R_32F, ldq, &zero, out(2), CUDA_R_32F,
                                sq, batch, compute, CUBLAS_GEMM_DEFAULT),
            "cublasGemmBatchedEx (scores)");
    causal_softmax(dscores, n, sq, c.stream);
    c.check(cudaGetLastError(), "causal_softmax");
    c.check(cublasGemmBatchedEx(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, d, sq, sq, &one, in(3),
                                CUDA_R_32F, ldk, in(2), CUDA_R_32F, sq, &zero, out(4), CUDA_R_32F,
                                ldq, batch, compute, CUBLAS_GEMM_DEFAULT),
            "cublasGemmBatchedEx (context)");
    // host[] is rewritten for the next chunk only after these calls are done.
    c.sync();
  }
}

}  // namespace cuda

int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::unique_ptr<MatrixBackend> make_cuda_backend(const std::vector<int>& devices) {
  return std::make_unique<CudaBackend>(devices);
}

}  // namespace ptq

const ptq::CudaBackendApi* ptq_cuda_backend_api() {
  static const ptq::CudaBackendApi api{&ptq::make_cuda_backend, &ptq::cuda_device_count};
  return &api;
}
