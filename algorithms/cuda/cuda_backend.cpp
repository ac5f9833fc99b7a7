#include "algorithms/cuda/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "algorithms/cuda/kernels.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// A failed CUDA call: out of GPU memory is the usual cause, which a user can
// act on (a smaller --batch-windows, another GPU), so it is an InputError.
class Checker {
 public:
  explicit Checker(int device) : where_("cuda:" + std::to_string(device)) {}
  void operator()(cudaError_t e, const char* call) const {
    if (e != cudaSuccess) fail(call, cudaGetErrorString(e));
  }
  void operator()(cublasStatus_t s, const char* call) const {
    if (s != CUBLAS_STATUS_SUCCESS) fail(call, cublasGetStatusString(s));
  }
  void operator()(cusolverStatus_t s, const char* call) const {
    if (s != CUSOLVER_STATUS_SUCCESS) fail(call, "cuSOLVER status " + std::to_string(int(s)));
  }
  const std::string& where() const { return where_; }

 private:
  [[noreturn]] void fail(const char* call, const std::string& why) const {
    throw input_error(where_ + " " + call, "success", why);
  }
  std::string where_;
};

// Device memory that grows to the largest request and is reused.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  template <class T>
  T* reserve(std::size_t count, const Checker& check) {
    const std::size_t bytes = std::max<std::size_t>(count * sizeof(T), 1);
    if (bytes > size_) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = nullptr;
      size_ = 0;
      check(cudaMalloc(&data_, bytes), "cudaMalloc");
      size_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// Rows of A per GEMM call (and of X per SYRK call): bounds the device memory
// a call takes; fixed, so the bits depend only on the shapes.
constexpr Eigen::Index kRowsPerCall = 16384;

// Attention score entries (float32) held at once: (sequence, head) pairs are
// attended in chunks of at most this many seq x seq matrices' worth (1 GiB).
constexpr std::int64_t kScoreFloats = std::int64_t{1} << 28;

class CudaBackend final : public MatrixBackend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return name_; }
  void gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b, GemmOp op_b,
            Eigen::Ref<MatrixRM> c, GemmOutput mode) override;
  void xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) override;
  void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                        const AttentionShape& shape, MatrixRM& out) override;
  bool lower_cholesky_inverse(Eigen::MatrixXd& a) override;

 private:
  // The calling thread's current device (TBB threads may call).
  void enter() const { check_(cudaSetDevice(device_), "cudaSetDevice"); }
  void upload(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
              Eigen::Index stride);
  void download(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                Eigen::Index stride);
  void sync() const { check_(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  int solver_info(const int* info);

  int device_;
  Checker check_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
  std::mutex mutex_;  // one call at a time: the buffers are shared
  DeviceBuffer a_, b_, c_, work_, info_, scores_, pointers_;
  std::vector<char> host_work_;
};

CudaBackend::CudaBackend(int device) : device_(device), check_(device) {
  const int count = cuda_device_count();
  if (device < 0 || device >= count)
    throw input_error(
        "--device cuda:" + std::to_string(device),
        count == 0 ? std::string("a CUDA GPU") : "a GPU index below " + std::to_string(count),
        count == 0 ? "no GPU (or no NVIDIA driver) on this machine" : "no such GPU");
  enter();
  cudaDeviceProp prop{};
  check_(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  name_ = check_.where() + " (" + prop.name + ")";
  check_(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check_(cublasCreate(&blas_), "cublasCreate");
  check_(cublasSetStream(blas_, stream_), "cublasSetStream");
  // Full float32 products (no TF32) and no atomics: reproducible bits.
  check_(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  check_(cublasSetAtomicsMode(blas_, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
  check_(cusolverDnCreate(&solver_), "cusolverDnCreate");
  check_(cusolverDnSetStream(solver_, stream_), "cusolverDnSetStream");
  check_(cusolverDnCreateParams(&params_), "cusolverDnCreateParams");
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  if (params_ != nullptr) cusolverDnDestroyParams(params_);
  if (solver_ != nullptr) cusolverDnDestroy(solver_);
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

// rows x cols floats, row stride `stride` on the host, packed on the device.
void CudaBackend::upload(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                         Eigen::Index stride) {
  const auto width = static_cast<std::size_t>(cols) * sizeof(float);
  check_(cudaMemcpy2DAsync(dst, width, src, static_cast<std::size_t>(stride) * sizeof(float), width,
                           static_cast<std::size_t>(rows), cudaMemcpyHostToDevice, stream_),
         "cudaMemcpy2DAsync (to the GPU)");
}

void CudaBackend::download(float* dst, const float* src, Eigen::Index rows, Eigen::Index cols,
                           Eigen::Index stride) {
  const auto width = static_cast<std::size_t>(cols) * sizeof(float);
  check_(cudaMemcpy2DAsync(dst, static_cast<std::size_t>(stride) * sizeof(float), src, width, width,
                           static_cast<std::size_t>(rows), cudaMemcpyDeviceToHost, stream_),
         "cudaMemcpy2DAsync (from the GPU)");
}

void CudaBackend::gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b,
                       GemmOp op_b, Eigen::Ref<MatrixRM> c, GemmOutput mode) {
  const std::lock_guard lock(mutex_);
  enter();
  const bool transposed = op_b == GemmOp::transposed;
  const Eigen::Index m = a.rows(), k = a.cols(), n = c.cols();
  const Eigen::Index chunk = std::min(m, kRowsPerCall);
  float* db = b_.reserve<float>(static_cast<std::size_t>(b.size()), check_);
  float* da = a_.reserve<float>(static_cast<std::size_t>(chunk * k), check_);
  float* dc = c_.reserve<float>(static_cast<std::size_t>(chunk * n), check_);
  upload(db, b.data(), b.rows(), b.cols(), b.outerStride());
  const float alpha = 1.0f, beta = mode == GemmOutput::accumulate ? 1.0f : 0.0f;
  for (Eigen::Index r0 = 0; r0 < m; r0 += chunk) {
    const Eigen::Index rows = std::min(chunk, m - r0);
    upload(da, a.data() + r0 * a.outerStride(), rows, k, a.outerStride());
    float* c0 = c.data() + r0 * c.outerStride();
    if (mode == GemmOutput::accumulate) upload(dc, c0, rows, n, c.outerStride());
    // A packed row-major [r, c] matrix is the column-major [c, r] one, its
    // transpose: row-major C = A op(B) is column-major C^T = op(B)^T A^T.
    check_(cublasSgemm(blas_, transposed ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                       static_cast<int>(n), static_cast<int>(rows), static_cast<int>(k), &alpha, db,
                       static_cast<int>(transposed ? k : n), da, static_cast<int>(k), &beta, dc,
                       static_cast<int>(n)),
           "cublasSgemm");
    download(c0, dc, rows, n, c.outerStride());
  }
  sync();
}

void CudaBackend::xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) {
  const std::lock_guard lock(mutex_);
  enter();
  const Eigen::Index n = x.cols();
  const Eigen::Index chunk = std::max<Eigen::Index>(std::min(x.rows(), kRowsPerCall), 1);
  float* dx = a_.reserve<float>(static_cast<std::size_t>(chunk * n), check_);
  float* dc = c_.reserve<float>(static_cast<std::size_t>(n * n), check_);
  check_(cudaMemsetAsync(dc, 0, static_cast<std::size_t>(n * n) * sizeof(float), stream_),
         "cudaMemsetAsync");
  const float alpha = 1.0f, one = 1.0f;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += chunk) {
    const Eigen::Index rows = std::min(chunk, x.rows() - r0);
    upload(dx, x.data() + r0 * x.outerStride(), rows, n, x.outerStride());
    // Row-major x [rows, n] is column-major x^T [n, rows]: SYRK's A A^T = x^T x.
    check_(cublasSsyrk(blas_, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(n),
                       static_cast<int>(rows), &alpha, dx, static_cast<int>(n), &one, dc,
                       static_cast<int>(n)),
           "cublasSsyrk");
  }
  // The caller's strictly lower triangle is not ours to write.
  Eigen::MatrixXf full(n, n);
  check_(cudaMemcpyAsync(full.data(), dc, static_cast<std::size_t>(n * n) * sizeof(float),
                         cudaMemcpyDeviceToHost, stream_),
         "cudaMemcpyAsync (from the GPU)");
  sync();
  upper.triangularView<Eigen::Upper>() = full.triangularView<Eigen::Upper>();
}

// Per (sequence, head) pair p of a chunk: S_p = scale Q_h K_g^T (cuBLAS,
// batched), the causal softmax in place (kernels.cu), O_h = S_p V_g. In the
// column-major terms cuBLAS uses, a row-major [t, c] block with row stride ld
// is its transpose: S^T = K Q^T and O^T = V^T S^T.
void CudaBackend::causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                   const AttentionShape& s, MatrixRM& out) {
  if (s.softcap > 0 || s.window > 0)  // Gemma's; the GPU path is for the Llama family yet
    throw input_error(check_.where() + " attention", "no soft-capping or sliding window",
                      "a model that needs them (run it with --device cpu)");
  const std::lock_guard lock(mutex_);
  enter();
  const std::int64_t sequences = q.rows() / s.seq_len, pairs = sequences * s.heads;
  const std::int64_t seq = s.seq_len, square = seq * seq;
  const std::int64_t chunk = std::clamp<std::int64_t>(kScoreFloats / square, 1, pairs);
  const int ldq = s.heads * s.head_dim, ldk = s.kv_heads * s.head_dim;
  float* dq = a_.reserve<float>(static_cast<std::size_t>(q.size() + 2 * k.size()), check_);
  float* dk = dq + q.size();
  float* dv = dk + k.size();
  float* dout = c_.reserve<float>(static_cast<std::size_t>(q.size()), check_);
  float* dscores = scores_.reserve<float>(static_cast<std::size_t>(chunk * square), check_);
  upload(dq, q.data(), q.rows(), q.cols(), q.cols());
  upload(dk, k.data(), k.rows(), k.cols(), k.cols());
  upload(dv, v.data(), v.rows(), v.cols(), v.cols());
  // Per pair: K_g, Q_h, S_p, V_g, O_h.
  std::vector<float*> host(static_cast<std::size_t>(5 * chunk));
  float** dptr = pointers_.reserve<float*>(host.size(), check_);
  const float scale = score_scale(s), one = 1.0f, zero = 0.0f;
  for (std::int64_t p0 = 0; p0 < pairs; p0 += chunk) {
    const std::int64_t n = std::min(chunk, pairs - p0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t seq_index = (p0 + i) / s.heads, head = (p0 + i) % s.heads;
      const std::int64_t kv = head / (s.heads / s.kv_heads), row0 = seq_index * seq;
      host[i] = dk + row0 * ldk + kv * s.head_dim;
      host[chunk + i] = dq + row0 * ldq + head * s.head_dim;
      host[2 * chunk + i] = dscores + i * square;
      host[3 * chunk + i] = dv + row0 * ldk + kv * s.head_dim;
      host[4 * chunk + i] = dout + row0 * ldq + head * s.head_dim;
    }
    check_(cudaMemcpyAsync(dptr, host.data(), host.size() * sizeof(float*), cudaMemcpyHostToDevice,
                           stream_),
           "cudaMemcpyAsync (to the GPU)");
    const int sq = s.seq_len, d = s.head_dim, batch = static_cast<int>(n);
    check_(cublasSgemmBatched(blas_, CUBLAS_OP_T, CUBLAS_OP_N, sq, sq, d, &scale, dptr, ldk,
                              dptr + chunk, ldq, &zero, dptr + 2 * chunk, sq, batch),
           "cublasSgemmBatched (scores)");
    cuda::causal_softmax(dscores, n, sq, stream_);
    check_(cudaGetLastError(), "causal_softmax");
    check_(cublasSgemmBatched(blas_, CUBLAS_OP_N, CUBLAS_OP_N, d, sq, sq, &one, dptr + 3 * chunk,
                              ldk, dptr + 2 * chunk, sq, &zero, dptr + 4 * chunk, ldq, batch),
           "cublasSgemmBatched (context)");
    // host[] is rewritten for the next chunk only after these calls are done.
    sync();
  }
  download(out.data(), dout, out.rows(), out.cols(), out.cols());
  sync();
}

// The LAPACK-style info a cuSOLVER call left on the device.
int CudaBackend::solver_info(const int* info) {
  int value = 0;
  check_(cudaMemcpyAsync(&value, info, sizeof value, cudaMemcpyDeviceToHost, stream_),
         "cudaMemcpyAsync (from the GPU)");
  sync();
  return value;
}

bool CudaBackend::lower_cholesky_inverse(Eigen::MatrixXd& a) {
  const std::lock_guard lock(mutex_);
  enter();
  const Eigen::Index n = a.rows();
  const auto bytes = static_cast<std::size_t>(a.size()) * sizeof(double);
  auto* da = c_.reserve<double>(static_cast<std::size_t>(a.size()), check_);
  int* info = info_.reserve<int>(1, check_);
  check_(cudaMemcpyAsync(da, a.data(), bytes, cudaMemcpyHostToDevice, stream_),
         "cudaMemcpyAsync (to the GPU)");
  std::size_t device_bytes = 0, host_bytes = 0;
  check_(cusolverDnXpotrf_bufferSize(solver_, params_, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, da, n,
                                     CUDA_R_64F, &device_bytes, &host_bytes),
         "cusolverDnXpotrf_bufferSize");
  host_work_.resize(host_bytes);
  check_(cusolverDnXpotrf(solver_, params_, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, da, n,
                          CUDA_R_64F, work_.reserve<char>(device_bytes, check_), device_bytes,
                          host_work_.data(), host_bytes, info),
         "cusolverDnXpotrf");
  if (solver_info(info) != 0) return false;  // not positive definite
  check_(cusolverDnXtrtri_bufferSize(solver_, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                     CUDA_R_64F, da, n, &device_bytes, &host_bytes),
         "cusolverDnXtrtri_bufferSize");
  host_work_.resize(host_bytes);
  check_(cusolverDnXtrtri(solver_, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, da,
                          n, work_.reserve<char>(device_bytes, check_), device_bytes,
                          host_work_.data(), host_bytes, info),
         "cusolverDnXtrtri");
  if (solver_info(info) != 0) return false;  // a zero pivot
  check_(cudaMemcpyAsync(a.data(), da, bytes, cudaMemcpyDeviceToHost, stream_),
         "cudaMemcpyAsync (from the GPU)");
  sync();
  return true;
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::unique_ptr<MatrixBackend> make_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace ptq

const ptq::CudaBackendApi* ptq_cuda_backend_api() {
  static const ptq::CudaBackendApi api{&ptq::make_cuda_backend, &ptq::cuda_device_count};
  return &api;
}
