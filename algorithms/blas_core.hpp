#pragma once
// Which OpenBLAS kernel set ("core") runs ptq's GEMMs.
//
// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels from the CPU
// model when the library loads, and a model newer than the library falls back
// to the generic SSE3 "Prescott" kernels: OpenBLAS 0.3.21 (Debian 12) on an
// Emerald Rapids Xeon (family 6, model 207) runs SGEMM at ~20 GFLOP/s per core
// instead of ~85 (AVX2, "Haswell") or ~160 (AVX-512, "SkylakeX"). The choice
// can only be made before the library loads (OPENBLAS_CORETYPE), so a program
// that wants the fitting kernels re-executes itself with that variable set.
#include <optional>
#include <string>

namespace ptq {

// The kernel set OpenBLAS chose when it loaded, e.g. "Haswell".
std::string blas_core_name();

// The kernel set to ask for when OpenBLAS fell back to its generic one on a
// CPU with AVX-512 ("SkylakeX") or AVX2 ("Haswell"); nullopt when OpenBLAS's
// own choice stands (it recognised the CPU, or the CPU has neither).
std::optional<std::string> fitting_blas_core();

// Call first in main: when OPENBLAS_CORETYPE is unset and fitting_blas_core()
// names a kernel set, re-executes this program with OPENBLAS_CORETYPE set to
// it (same arguments and environment otherwise). Returns when there is
// nothing to do or the re-execution failed (the detected kernels then run).
void reexec_with_fitting_blas_core(char** argv);

}  // namespace ptq
