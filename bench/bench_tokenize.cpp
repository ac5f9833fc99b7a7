// Times Tokenizer::load and Tokenizer::encode (one thread) on a text file for
// each tokenizer given. Usage: bench_tokenize TEXT MODEL_DIR... ; prints a
// Markdown table row per model. Encode is run `repeats` times; the best counts.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "io/error.hpp"
#include "io/tokenizer.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ptq::input_error(path, "a readable text file", "none");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TEXT MODEL_DIR...\n", argv[0]);
    return 2;
  }
  constexpr int repeats = 3;
  try {
    const std::string text = read_file(argv[1]);
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf(
        "| model | load s | encode s (best of %d) | MB/s | tokens |\n|---|---|---|---|---|\n",
        repeats);
    for (int i = 2; i < argc; ++i) {
      auto start = clock_type::now();
      const auto tok = ptq::Tokenizer::load(argv[i]);
      const double load_s = seconds_since(start);
      double best = 1e30;
      std::size_t count = 0;
      for (int r = 0; r < repeats; ++r) {
        start = clock_type::now();
        count = tok.encode(text).size();
        best = std::min(best, seconds_since(start));
      }
      std::printf("| %s | %.3f | %.3f | %.2f | %zu |\n", argv[i], load_s, best, mb / best, count);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenize: %s\n", e.what());
    return 1;
  }
  return 0;
}
