// gguf::File::open on a GGUF file: header, metadata, tensor infos, data bounds.
// Metadata values include nested arrays; the data section's offsets must be
// aligned and its tensors must not overlap.
#include "fuzz_util.hpp"
#include "io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("file.gguf", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] { gguf::File::open(path); });
  return 0;
}
