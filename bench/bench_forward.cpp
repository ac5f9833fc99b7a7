// Forward throughput beside the machine's SGEMM peak, measured in the same run:
// - a model folder: embed + all blocks + final norm + head over `windows`
//   windows of `ctx` tokens (blocks resident);
// - `llama2-7b`: `blocks` decoder blocks of Llama-2-7B's width (hidden 4096,
//   MLP 11008, 32 heads of 128) with random weights of a fixed seed, built in
//   memory (no checkpoint needed), over random hidden states.
// Usage: bench_forward MODEL_DIR IDS_FILE [ctx=512] [windows=4] [threads=2] [repeats=3]
//        bench_forward llama2-7b [ctx=512] [windows=2] [threads=2] [repeats=3] [blocks=1]
#include <cblas.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "algorithms/blas_core.hpp"
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

// The machine's SGEMM peak at `threads` threads: the better of one 2048^3
// cblas_sgemm with OpenBLAS's own threads, and `threads` independent
// single-threaded ones run at once by TBB (how ptq runs its GEMMs).
double sgemm_peak_gflops(int threads, int repeats) {
  constexpr int n = 2048;
  const MatrixRM a = MatrixRM::Random(n, n), b = MatrixRM::Random(n, n);
  std::vector<MatrixRM> c(static_cast<std::size_t>(threads), MatrixRM(n, n));
  const auto sgemm = [&](MatrixRM& out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, out.data(), n);
  };
  openblas_set_num_threads(threads);
  const double blas_threads_s = best_seconds(repeats, [&] { sgemm(c[0]); });
  ptq::force_single_threaded_blas();
  const double tbb_s = best_seconds(repeats, [&] {
    tbb::parallel_for(0, threads, [&](int i) { sgemm(c[static_cast<std::size_t>(i)]); });
  });
  const double flops = 2.0 * n * n * n;
  return std::max(flops / blas_threads_s, threads * flops / tbb_s) / 1e9;
}

// FLOPs per token of the blocks: 2 x linear weights + 2 x ctx x hidden per
// block (causal attention: QK^T and PV over ctx/2 keys on average, both counted).
double block_flops_per_token(const ptq::ModelConfig& c, int ctx) {
  const double weights = static_cast<double>(ptq::block_linear_weights(c));
  return c.num_layers * (2.0 * weights + 2.0 * ctx * static_cast<double>(c.hidden_size));
}

struct Measured {
  double seconds = 0.0, tokens = 0.0, flops = 0.0;
};

// The whole model: the blocks, plus 2 x vocab x hidden per token for the head.
Measured model_forward(const char* dir, const char* ids_file, int ctx, int windows, int repeats) {
  const ptq::Model model = ptq::Model::open(dir);
  std::vector<std::int32_t> ids = ptq::read_ids(ids_file);
  ids.resize(static_cast<std::size_t>(ctx) * windows);
  ptq::BlockSource blocks(model, std::size_t{1} << 34);
  const double s = best_seconds(repeats, [&] {
    const MatrixRM hidden = ptq::final_hidden(model, blocks, ids, ctx);
    const MatrixRM logits = model.head(hidden, 0, hidden.rows());
    if (logits.size() == 0) std::abort();
  });
  const ptq::ModelConfig& c = model.config();
  const double per_token = block_flops_per_token(c, ctx) + 2.0 * c.vocab_size * c.hidden_size;
  return {s, static_cast<double>(ids.size()), per_token * static_cast<double>(ids.size())};
}

ptq::ModelConfig llama2_7b_config(int blocks) {
  ptq::ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_layers = blocks;
  c.num_heads = 32;
  c.num_kv_heads = 32;
  c.head_dim = 128;
  c.vocab_size = 32000;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  return c;
}

// Uniform in [-scale, scale] from Eigen's generator (std::rand, seeded by the caller).
MatrixRM random_matrix(Eigen::Index rows, Eigen::Index cols, float scale) {
  return MatrixRM::Random(rows, cols) * scale;
}

// Weights of the size Llama's initializer gives (std 0.02), norms of one.
ptq::BlockWeights random_block(const ptq::ModelConfig& c, int layer) {
  ptq::BlockWeights w;
  w.layer = layer;
  for (ptq::LinearRole r : ptq::all_linear_roles) {
    w.weight(r) =
        random_matrix(ptq::linear_out_features(c, r), ptq::linear_in_features(c, r), 0.035f);
  }
  w.input_norm = ptq::VectorF::Ones(c.hidden_size);
  w.post_attention_norm = ptq::VectorF::Ones(c.hidden_size);
  return w;
}

Measured llama2_7b_blocks(int ctx, int windows, int repeats, int blocks) {
  const ptq::ModelConfig c = llama2_7b_config(blocks);
  std::srand(2024);
  std::vector<ptq::BlockWeights> weights;
  for (int i = 0; i < blocks; ++i) weights.push_back(random_block(c, i));
  const MatrixRM input =
      random_matrix(static_cast<Eigen::Index>(ctx) * windows, c.hidden_size, 1.0f);
  const double s = best_seconds(repeats, [&] {
    ptq::Activations act{input, ctx};
    for (const ptq::BlockWeights& w : weights) ptq::block_forward(c, w, act);
  });
  const double tokens = static_cast<double>(input.rows());
  return {s, tokens, block_flops_per_token(c, ctx) * tokens};
}

int arg(int argc, char** argv, int i, int fallback) {
  return argc > i ? std::atoi(argv[i]) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  ptq::reexec_with_fitting_blas_core(argv);
  const bool width_7b = argc >= 2 && std::string(argv[1]) == "llama2-7b";
  if (argc < 2 || (!width_7b && argc < 3)) {
    std::fprintf(stderr,
                 "usage: %s MODEL_DIR IDS_FILE [ctx] [windows] [threads] [repeats]\n"
                 "       %s llama2-7b [ctx] [windows] [threads] [repeats] [blocks]\n",
                 argv[0], argv[0]);
    return 2;
  }
  const int first = width_7b ? 2 : 3;  // index of ctx
  const int ctx = arg(argc, argv, first, 512);
  const int windows = arg(argc, argv, first + 1, width_7b ? 2 : 4);
  const int threads = arg(argc, argv, first + 2, 2);
  const int repeats = arg(argc, argv, first + 3, 3);
  const int blocks = arg(argc, argv, first + 4, 1);
  const ptq::ThreadScope scope(threads);
  const Measured m = width_7b ? llama2_7b_blocks(ctx, windows, repeats, blocks)
                              : model_forward(argv[1], argv[2], ctx, windows, repeats);
  const double forward_gflops = m.flops / m.seconds / 1e9;
  const double peak_gflops = sgemm_peak_gflops(threads, repeats);
  if (width_7b) {
    std::printf("llama2-7b width, %d random block(s)  ctx %d  windows %d  threads %d\n", blocks,
                ctx, windows, threads);
  } else {
    std::printf("model %s  ctx %d  windows %d  threads %d\n", argv[1], ctx, windows, threads);
  }
  std::printf("openblas core: %s\n", ptq::blas_core_name().c_str());
  std::printf("forward: %.3f s  %.0f tokens/s  %.1f GFLOP/s\n", m.seconds, m.tokens / m.seconds,
              forward_gflops);
  std::printf("sgemm 2048^3 peak: %.1f GFLOP/s\n", peak_gflops);
  std::printf("ratio forward/sgemm: %.1f %%\n", 100.0 * forward_gflops / peak_gflops);
  return 0;
}
