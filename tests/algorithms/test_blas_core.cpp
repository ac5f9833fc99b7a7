// The test binaries start through tests/blas_main.cpp, which re-executes them
// as the ptq binary does (algorithms/blas_core.hpp): what runs here is what ptq runs.
#include <gtest/gtest.h>

#include <cstdlib>

#include "algorithms/blas_core.hpp"

namespace ptq {
namespace {

TEST(BlasCore, NeverLeavesAnAvx2CpuOnTheGenericKernels) {
  if (blas_core_name() == "Prescott" && std::getenv("OPENBLAS_CORETYPE") != nullptr)
    GTEST_SKIP() << "the generic kernels asked for by hand (OPENBLAS_CORETYPE)";
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "no AVX2: the generic kernels are the fitting ones";
  EXPECT_NE(blas_core_name(), "Prescott");
  EXPECT_FALSE(fitting_blas_core().has_value()) << "a better kernel set was left unused";
}

}  // namespace
}  // namespace ptq
