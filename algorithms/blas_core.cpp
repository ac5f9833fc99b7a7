#include "algorithms/blas_core.hpp"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>

namespace ptq {

std::string blas_core_name() { return openblas_get_corename(); }

std::optional<std::string> fitting_blas_core() {
  // "Prescott" is what DYNAMIC_ARCH falls back to for an unknown x86-64 model.
  if (blas_core_name() != "Prescott") return std::nullopt;
  // The instruction sets OpenBLAS's SkylakeX kernels use; GCC's checks include
  // the OS saving the wide registers.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return std::nullopt;
}

void reexec_with_fitting_blas_core(char** argv) {
  // Set by the user or by an earlier re-execution: never loop.
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  const std::optional<std::string> core = fitting_blas_core();
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core->c_str(), 1);
  execv("/proc/self/exe", argv);
}

}  // namespace ptq
