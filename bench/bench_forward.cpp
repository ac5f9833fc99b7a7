// Forward throughput of a model at a given context, beside the rate of one
// large cblas_sgemm with the same thread count (OpenBLAS's own threads),
// measured in the same run.
// Usage: bench_forward MODEL_DIR IDS_FILE [ctx=512] [windows=4] [threads=2] [repeats=3]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "algorithms/parallel_gemm.hpp"
#include "calibrate/model.hpp"
#include "calibrate/threads.hpp"
#include "io/ids_file.hpp"

namespace {

using ptq::MatrixRM;

template <class F>
double best_seconds(int repeats, F&& f) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// The reference keeps OpenBLAS's own threading (`threads` threads), as before
// ptq switched BLAS to one thread, so the ratio stays comparable.
double sgemm_gflops(int threads, int repeats) {
  constexpr int n = 2048;
  openblas_set_num_threads(threads);
  const MatrixRM a = MatrixRM::Random(n, n), b = MatrixRM::Random(n, n);
  MatrixRM c(n, n);
  const double s = best_seconds(repeats, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
  ptq::force_single_threaded_blas();
  return 2.0 * n * n * n / s / 1e9;
}

// FLOPs per token: 2 x (block linear weights + head) + 2 x layers x ctx x hidden
// (causal attention: QK^T and PV over ctx/2 keys on average, both counted).
double flops_per_token(const ptq::ModelConfig& c, int ctx) {
  double weights = static_cast<double>(c.vocab_size) * c.hidden_size;
  for (ptq::LinearRole r : ptq::all_linear_roles) {
    weights += static_cast<double>(c.num_layers) * ptq::linear_out_features(c, r) *
               ptq::linear_in_features(c, r);
  }
  return 2.0 * weights + 2.0 * c.num_layers * ctx * static_cast<double>(c.hidden_size);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR IDS_FILE [ctx] [windows] [threads] [repeats]\n",
                 argv[0]);
    return 2;
  }
  const int ctx = argc > 3 ? std::atoi(argv[3]) : 512;
  const int windows = argc > 4 ? std::atoi(argv[4]) : 4;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 2;
  const int repeats = argc > 6 ? std::atoi(argv[6]) : 3;
  const ptq::ThreadScope scope(threads);
  const ptq::Model model = ptq::Model::open(argv[1]);
  std::vector<std::int32_t> ids = ptq::read_ids(argv[2]);
  ids.resize(static_cast<std::size_t>(ctx) * windows);
  ptq::BlockSource blocks(model, std::size_t{1} << 34);
  const double forward_s = best_seconds(repeats, [&] {
    const MatrixRM hidden = ptq::final_hidden(model, blocks, ids, ctx);
    const MatrixRM logits = model.head(hidden, 0, hidden.rows());
    if (logits.size() == 0) std::abort();
  });
  const double tokens = static_cast<double>(ids.size());
  const double forward_gflops = flops_per_token(model.config(), ctx) * tokens / forward_s / 1e9;
  const double gemm_gflops = sgemm_gflops(threads, repeats);
  std::printf("model %s  ctx %d  windows %d  threads %d\n", argv[1], ctx, windows, threads);
  std::printf("forward: %.3f s  %.0f tokens/s  %.1f GFLOP/s\n", forward_s, tokens / forward_s,
              forward_gflops);
  std::printf("sgemm 2048^3: %.1f GFLOP/s\n", gemm_gflops);
  std::printf("ratio forward/sgemm: %.1f %%\n", 100.0 * forward_gflops / gemm_gflops);
  return 0;
}
