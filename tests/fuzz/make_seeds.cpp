// fuzz_make_seeds OUT: writes OUT/<target>/<seed> for every fuzz target
// (seeds.hpp says why they are small). bench/fuzz.sh runs it before fuzzing.
#include <cstdio>

#include "io/error.hpp"
#include "seeds.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds OUT_DIR\n");
    return 2;
  }
  const ptq::fuzz::Seeds seeds(argv[1]);
  try {
    ptq::fuzz::add_io_seeds(seeds);
    ptq::fuzz::add_tokenizer_seeds(seeds);
    ptq::fuzz::add_gguf_seeds(seeds);
    ptq::fuzz::add_formats_seeds(seeds);
  } catch (const ptq::InputError& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
