// read_imatrix on llama.cpp's importance matrix (a GGUF file), then importance().
// in_sum2/counts pairs, their types and sizes, the imatrix.* keys.
#include "fuzz_util.hpp"
#include "io/imatrix.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("imatrix.gguf", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] {
    const Imatrix imatrix = read_imatrix(path);
    for (const auto& [name, entry] : imatrix.entries) imatrix.importance(name);
  });
  return 0;
}
