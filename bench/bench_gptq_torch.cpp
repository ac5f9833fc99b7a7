// bench_gptq_torch DIR [--threads N]
//
// Times gptq_quantize on the layers that bench/gptq_reference.py (PyTorch) wrote into
// DIR, with the configuration and thread count it used, and cross-checks our result on
// its cross-check layer against its codes and dequantized weights (file formats: the
// docstring of gptq_reference.py). Prints two Markdown tables on stdout, progress on
// stderr. Run by bench/gptq.sh; never by ctest.
#include <cblas.h>  // openblas_get_corename
#include <tbb/global_control.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "algorithms/gptq.hpp"
#include "algorithms/parallel_gemm.hpp"
#include "algorithms/quantized_matrix.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;
using Row = std::vector<std::string>;

// The tab-separated rows of `path`, each with exactly `columns` fields.
std::vector<Row> read_table(const fs::path& path, std::size_t columns) {
  std::ifstream in(path);
  if (!in) throw input_error(path.string(), "a readable table (run gptq_reference.py)", "none");
  std::vector<Row> rows;
  std::string line;
  while (std::getline(in, line)) {
    Row row;
    std::istringstream fields(line);
    for (std::string field; std::getline(fields, field, '\t');) row.push_back(field);
    if (row.size() != columns) {
      throw input_error(path.string() + " line " + std::to_string(rows.size() + 1),
                        std::to_string(columns) + " tab-separated fields",
                        std::to_string(row.size()));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

template <class T>
T parse_number(const std::string& text, const std::string& where) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) {
    throw input_error(where, "a number", "\"" + text + "\"");
  }
  return value;
}

// `count` raw little-endian values of type T.
template <class T>
std::vector<T> read_raw(const fs::path& path, std::size_t count) {
  std::error_code error;
  const auto bytes = fs::file_size(path, error);
  if (error || bytes != count * sizeof(T)) {
    throw input_error(path.string(), std::to_string(count * sizeof(T)) + " bytes",
                      error ? "no file" : std::to_string(bytes) + " bytes");
  }
  std::vector<T> values(count);
  std::ifstream(path, std::ios::binary)
      .read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(bytes));
  return values;
}

// A float32 [rows, cols] row-major file.
MatrixRM read_matrix(const fs::path& path, Eigen::Index rows, Eigen::Index cols) {
  const auto values = read_raw<float>(path, static_cast<std::size_t>(rows * cols));
  return Eigen::Map<const MatrixRM>(values.data(), rows, cols);
}

std::map<std::string, GptqConfig> read_configs(const fs::path& dir) {
  std::map<std::string, GptqConfig> configs;
  for (const Row& r : read_table(dir / "configs.tsv", 8)) {
    const std::string where = "configs.tsv " + r[0];
    GptqConfig c;
    c.spec.bits = parse_number<int>(r[1], where + " bits");
    c.spec.symmetry = r[2] == "1" ? Symmetry::Symmetric : Symmetry::Asymmetric;
    const int group_size = parse_number<int>(r[3], where + " group_size");
    c.spec.granularity = group_size == 0 ? Granularity::Channel : Granularity::Group;
    if (group_size != 0) c.spec.group_size = group_size;
    c.order = r[4] == "1" ? ColumnOrder::ActivationOrder : ColumnOrder::Natural;
    if (r[5] != "f32" && r[5] != "f64") throw input_error(where + " precision", "f32 or f64", r[5]);
    c.precision = r[5] == "f64" ? Precision::Float64 : Precision::Float32;
    c.block_size = parse_number<int>(r[6], where + " block_size");
    c.damp = parse_number<double>(r[7], where + " damp");
    c.validate();
    configs.emplace(r[0], c);
  }
  return configs;
}

const GptqConfig& find_config(const std::map<std::string, GptqConfig>& configs,
                              const std::string& name) {
  const auto it = configs.find(name);
  if (it == configs.end()) throw input_error("configs.tsv", "a row for " + name, "none");
  return it->second;
}

// A row of layers.tsv: a layer and how long PyTorch took on it.
struct LayerRow {
  std::string name;
  Eigen::Index out = 0;
  Eigen::Index in = 0;
  std::string config;
  double torch_seconds = 0;
};

std::vector<LayerRow> read_layer_rows(const fs::path& dir) {
  std::vector<LayerRow> layers;
  for (const Row& r : read_table(dir / "layers.tsv", 5)) {
    const std::string where = "layers.tsv " + r[0];
    layers.push_back({r[0], parse_number<Eigen::Index>(r[1], where + " out"),
                      parse_number<Eigen::Index>(r[2], where + " in"), r[3],
                      parse_number<double>(r[4], where + " seconds")});
  }
  return layers;
}

struct Layer {
  Eigen::Index out = 0;
  Eigen::Index in = 0;
  MatrixRM W;         // [out, in]
  Eigen::MatrixXd H;  // [in, in]
};

Layer read_layer(const fs::path& dir, const LayerRow& row) {
  Layer layer{row.out, row.in, read_matrix(dir / (row.name + ".W.f32"), row.out, row.in), {}};
  layer.H = read_matrix(dir / (row.name + ".H.f32"), row.in, row.in).cast<double>();
  return layer;
}

// Same rule as gptq_reference.py: big layers are timed once, the others best of 3.
int repeats_for(const Layer& layer) { return layer.in >= 4096 ? 1 : 3; }

double best_seconds(const std::function<void()>& run, int repeats) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

void print_timings(const fs::path& dir, const std::vector<LayerRow>& rows,
                   const std::map<std::string, GptqConfig>& configs) {
  std::printf("| layer [out x in] | config | torch s | ptq s | torch / ptq |\n");
  std::printf("|---|---|---:|---:|---:|\n");
  for (const LayerRow& row : rows) {
    const Layer layer = read_layer(dir, row);
    const GptqConfig& config = find_config(configs, row.config);
    const double ptq_s =
        best_seconds([&] { gptq_quantize(layer.W, layer.H, config); }, repeats_for(layer));
    std::fprintf(stderr, "ptq %s: %.3f s (torch %.3f s)\n", row.name.c_str(), ptq_s,
                 row.torch_seconds);
    std::printf("| %s | %s | %.3f | %.3f | %.2f |\n", row.name.c_str(), row.config.c_str(),
                row.torch_seconds, ptq_s, row.torch_seconds / ptq_s);
    std::fflush(stdout);
  }
}

// Our result for one cross-check configuration against the PyTorch one.
struct Agreement {
  Eigen::Index codes = 0;
  Eigen::Index differing_codes = 0;
  Eigen::Index differing_rows = 0;  // a flipped code changes the rest of its row's updates
  double max_abs_diff = 0;          // dequantized weights
  double output_error_ptq = 0;      // tr((W - Q) H (W - Q)^T)
  double output_error_torch = 0;
};

Agreement compare(const Layer& layer, const QuantizedMatrix& ours, const fs::path& codes_file,
                  const fs::path& deq_file) {
  const auto theirs_codes = read_raw<std::uint8_t>(codes_file, layer.out * layer.in);
  const MatrixRM theirs = read_matrix(deq_file, layer.out, layer.in);
  const MatrixRM mine = ours.dequantize();
  Agreement a;
  a.codes = layer.out * layer.in;
  for (Eigen::Index r = 0; r < layer.out; ++r) {
    Eigen::Index in_row = 0;
    for (Eigen::Index c = 0; c < layer.in; ++c) {
      in_row += ours.codes(r, c) != theirs_codes[r * layer.in + c];
    }
    a.differing_codes += in_row;
    a.differing_rows += in_row > 0;
  }
  a.max_abs_diff = (mine - theirs).cwiseAbs().maxCoeff();
  a.output_error_ptq = output_error(layer.W, mine, layer.H);
  a.output_error_torch = output_error(layer.W, theirs, layer.H);
  return a;
}

void print_cross_checks(const fs::path& dir, const std::vector<LayerRow>& rows,
                        const std::map<std::string, GptqConfig>& configs) {
  std::printf(
      "| config | differing codes | rows with a difference | max abs diff of W' | "
      "output error ptq | output error torch |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : read_table(dir / "xcheck.tsv", 2)) {
    const auto row =
        std::find_if(rows.begin(), rows.end(), [&](const LayerRow& l) { return l.name == r[1]; });
    if (row == rows.end()) throw input_error("xcheck.tsv " + r[0], "a layer of layers.tsv", r[1]);
    const Layer layer = read_layer(dir, *row);
    const GptqResult ours = gptq_quantize(layer.W, layer.H, find_config(configs, r[0]));
    const Agreement a =
        compare(layer, ours.quantized, dir / (r[0] + ".codes.u8"), dir / (r[0] + ".deq.f32"));
    std::printf("| %s on %s | %td of %td | %td of %td | %.3g | %.6g | %.6g |\n", r[0].c_str(),
                r[1].c_str(), a.differing_codes, a.codes, a.differing_rows, layer.out,
                a.max_abs_diff, a.output_error_ptq, a.output_error_torch);
    std::fflush(stdout);
  }
}

int run(int argc, char** argv) {
  if (argc != 2 && !(argc == 4 && std::string(argv[2]) == "--threads")) {
    std::fprintf(stderr, "usage: bench_gptq_torch DIR [--threads N]\n");
    return 2;
  }
  const fs::path dir = argv[1];
  const int threads = argc == 4 ? parse_number<int>(argv[3], "--threads") : 2;
  if (threads < 1) throw input_error("--threads", ">= 1", std::to_string(threads));
  // The same budget as torch.set_num_threads(threads): TBB's row tasks, with
  // OpenBLAS single-threaded inside them (ptq's policy, algorithms/parallel_gemm.hpp).
  const tbb::global_control tbb_threads(tbb::global_control::max_allowed_parallelism,
                                        static_cast<std::size_t>(threads));
  ptq::force_single_threaded_blas();
  const auto configs = read_configs(dir);
  const auto rows = read_layer_rows(dir);
  // OpenBLAS picks its kernels from the CPU model; one it does not know falls back to
  // slow generic ones (OPENBLAS_CORETYPE overrides), which matters for reading the numbers.
  std::printf("ptq's OpenBLAS kernels: %s (%s).\n\n", openblas_get_corename(),
              openblas_get_config());
  std::printf("### Seconds per layer (best of 3; 1 run where in >= 4096)\n\n");
  print_timings(dir, rows, configs);
  std::printf("\n### Cross-check against the PyTorch implementation\n\n");
  print_cross_checks(dir, rows, configs);
  return 0;
}

}  // namespace
}  // namespace ptq

int main(int argc, char** argv) {
  try {
    return ptq::run(argc, argv);
  } catch (const ptq::InputError& e) {
    std::fprintf(stderr, "bench_gptq_torch: %s\n", e.what());
    return 2;
  }
}
