// main of the test binaries that run GEMMs: OpenBLAS's kernels as the ptq
// binary picks them (algorithms/blas_core.hpp), so results computed in memory
// here match those of the ptq runs the tests start (a GPTQ Hessian from other
// kernels rounds some weights the other way).
#include <gtest/gtest.h>

#include "algorithms/blas_core.hpp"

int main(int argc, char** argv) {
  ptq::reexec_with_fitting_blas_core(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
