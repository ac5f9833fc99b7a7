// read_mix_types and read_mix_record on a mix.json.
// The record of a mix of grids read back to replay it (--mix-types) or to
// solve its costs again (--mix-costs).
#include "fuzz_util.hpp"
#include "pipeline/formats/mix_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("mix.json", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] { read_mix_types(path, "gguf"); });
  fuzz::refuse_cleanly([&] { read_mix_record(path, "compressed-tensors"); });
  return 0;
}
