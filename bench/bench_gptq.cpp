// Times gptq_quantize and rtn_quantize on random weights with the linear-layer
// shapes of a whole model (the `small` fixture by default: 6 blocks of q, k, v,
// o, gate, up, down), each with a correlated Hessian of its input width.
// Usage: bench_gptq [blocks=6] [hidden=512] [kv_out=256] [mlp=1280]
// Threads: TBB's default (all cores); OpenBLAS single-threaded (ptq's policy).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#include "algorithms/gptq.hpp"
#include "algorithms/rtn.hpp"

namespace {

using Clock = std::chrono::steady_clock;

ptq::MatrixRM random_matrix(int rows, int cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  ptq::MatrixRM W(rows, cols);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = normal(rng);
  return W;
}

Eigen::MatrixXd hessian(int in, std::mt19937& rng) {
  const ptq::MatrixRM X = random_matrix(2 * in, in, rng);
  const ptq::MatrixRM mix = random_matrix(in, in, rng);
  const Eigen::MatrixXd Y = (X * (mix + ptq::MatrixRM::Identity(in, in) * 0.05f)).cast<double>();
  return 2.0 / Y.rows() * Y.transpose() * Y;
}

struct Layer {
  int out, in;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const auto arg = [&](int i, int fallback) { return argc > i ? std::atoi(argv[i]) : fallback; };
  const int blocks = arg(1, 6), hidden = arg(2, 512), kv_out = arg(3, 256), mlp = arg(4, 1280);
  const std::vector<Layer> shapes = {{hidden, hidden}, {kv_out, hidden}, {kv_out, hidden},
                                     {hidden, hidden}, {mlp, hidden},    {mlp, hidden},
                                     {hidden, mlp}};
  std::mt19937 rng(0);
  std::map<int, Eigen::MatrixXd> hessians;
  for (const Layer& l : shapes) {
    if (!hessians.count(l.in)) hessians[l.in] = hessian(l.in, rng);
  }
  std::vector<ptq::MatrixRM> weights;
  for (const Layer& l : shapes) weights.push_back(random_matrix(l.out, l.in, rng));

  struct Run {
    const char* name;
    ptq::QuantSpec spec;
    ptq::ColumnOrder order;
  };
  using ptq::Granularity;
  const ptq::Symmetry asym = ptq::Symmetry::Asymmetric;
  const std::vector<Run> runs = {
      {"w4-pc", {4, asym, Granularity::Channel, 128}, ptq::ColumnOrder::Natural},
      {"w4-pc-actorder", {4, asym, Granularity::Channel, 128}, ptq::ColumnOrder::ActivationOrder},
      {"w4-g128", {4, asym, Granularity::Group, 128}, ptq::ColumnOrder::Natural},
      {"w3-g128-actorder", {3, asym, Granularity::Group, 128}, ptq::ColumnOrder::ActivationOrder}};
  std::printf("%d blocks, hidden %d, kv %d, mlp %d\n", blocks, hidden, kv_out, mlp);
  for (const Run& run : runs) {
    ptq::GptqConfig config;
    config.spec = run.spec;
    config.order = run.order;
    // Each block prepares its two input widths' Hessians once, as a pipeline
    // does for layers that read the same input.
    const auto t0 = Clock::now();
    double loss = 0;
    double prepare_s = 0;
    for (int b = 0; b < blocks; ++b) {
      const auto tp = Clock::now();
      std::map<int, ptq::GptqHessian> prepared;
      for (const auto& [in, H] : hessians) prepared.emplace(in, ptq::prepare_hessian(H, config));
      prepare_s += seconds_since(tp);
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        loss += ptq::gptq_quantize(weights[i], prepared.at(shapes[i].in), config).loss;
      }
    }
    const double gptq_s = seconds_since(t0);
    const auto t1 = Clock::now();
    for (int b = 0; b < blocks; ++b) {
      for (const auto& W : weights) ptq::rtn_quantize(W, run.spec);
    }
    std::printf("%-18s gptq %.3f s (of which prepare %.3f s, loss %.4g)  rtn %.3f s\n", run.name,
                gptq_s, prepare_s, loss, seconds_since(t1));
  }
  return 0;
}
