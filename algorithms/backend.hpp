#pragma once
// Where ptq's dense kernels run: the CPU (OpenBLAS/LAPACK, the default) or a
// backend behind this interface (algorithms/cuda/: cuBLAS, cuSOLVER and a
// softmax kernel on one GPU). The algorithms' signatures do not change with
// the device: while a BackendScope is alive, parallel_gemm,
// parallel_xtx_upper, causal_attention and prepare_hessian's factorization
// call the scope's backend instead of the CPU. A backend must be
// deterministic (same inputs, same bits, run to run) on a given device; it
// need not match the CPU's rounding.
#include <Eigen/Core>
#include <string>

#include "algorithms/attention.hpp"
#include "algorithms/matrix.hpp"
#include "algorithms/parallel_gemm.hpp"

namespace ptq {

class DeviceGroup;

class MatrixBackend {
 public:
  virtual ~MatrixBackend() = default;
  virtual std::string name() const = 0;  // e.g. "cuda:0 (NVIDIA H200)"
  // parallel_gemm's contract.
  virtual void gemm(const Eigen::Ref<const MatrixRM>& a, const Eigen::Ref<const MatrixRM>& b,
                    GemmOp op_b, Eigen::Ref<MatrixRM> c, GemmOutput mode) = 0;
  // parallel_xtx_upper's contract.
  virtual void xtx_upper(const Eigen::Ref<const MatrixRM>& x, Eigen::MatrixXf& upper) = 0;
  // causal_attention's contract; out is already sized.
  virtual void causal_attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                                const AttentionShape& shape, MatrixRM& out) = 0;
  // a: [n, n] symmetric, its lower triangle read. On success a's lower
  // triangle becomes L^-1 with a = L L^T (LAPACK dpotrf then dtrtri, 'L') and
  // its strictly upper triangle is unspecified; false when a is not
  // (numerically) positive definite.
  virtual bool lower_cholesky_inverse(Eigen::MatrixXd& a) = 0;
  // The devices of the GPU path (algorithms/device.hpp), or null when the
  // backend has no memory of its own.
  virtual DeviceGroup* device_group() { return nullptr; }
};

// The backend of the live BackendScope, or null (the CPU).
MatrixBackend* active_backend();

// For its lifetime, the kernels above run on `backend` (not owned; it must
// outlive the scope). Scopes nest; create one in a driver, around the work.
class BackendScope {
 public:
  explicit BackendScope(MatrixBackend* backend);
  ~BackendScope();
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;

 private:
  MatrixBackend* previous_;
};

}  // namespace ptq
