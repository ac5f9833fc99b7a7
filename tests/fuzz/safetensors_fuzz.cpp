// Checkpoint::open on one .safetensors file, then each tensor's size and floats.
// The header (length prefix, JSON, dtypes, shapes, offsets, overlaps) is all
// a hostile file controls; the values are read as a model load reads them.
#include "fuzz_util.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("model.safetensors", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] {
    const Checkpoint checkpoint = Checkpoint::open(path);
    for (const TensorView* t : checkpoint.tensors()) {
      t->numel();  // as `ptq inspect` counts parameters
      if (t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16)
        t->to_float();
    }
  });
  return 0;
}
