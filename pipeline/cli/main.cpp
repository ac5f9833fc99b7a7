#include <cstdio>
#include <limits>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <exception>

#include "algorithms/blas_core.hpp"
#include "io/error.hpp"
#include "pipeline/cli/commands.hpp"

namespace {

// The block passes allocate and free activation batches of tens of MiB over
// and over. glibc serves each from a fresh mmap and unmaps it on free, so
// every batch is page-faulted in again (a tenth of a GPTQ run's CPU time went
// to the kernel). Serving them from the heap, kept after free, reuses the pages.
void keep_freed_memory() {
#ifdef __GLIBC__
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
}

}  // namespace

int main(int argc, char** argv) {
  ptq::reexec_with_fitting_blas_core(argv);
  keep_freed_memory();
  CLI::App app{"ptq: post-training quantization of LLM checkpoints"};
  app.require_subcommand(1);
  ptq::cli::add_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ptq::InputError& e) {
    std::fprintf(stderr, "ptq: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ptq: failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
