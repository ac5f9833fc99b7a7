// gguf_model_config, gguf_file_plan and read_gguf_tensor on a GGUF model.
// As `ptq eval` opens one: hyperparameters from the metadata, each tensor
// mapped to its Hugging Face name and shape, every tensor decoded to float32.
#include "fuzz_util.hpp"
#include "pipeline/formats/gguf_model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("model.gguf", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] {
    const auto file = gguf::File::open(path);
    const ModelConfig config = gguf_model_config(*file);
    for (const GgufTensorPlan& plan : gguf_file_plan(*file, config))
      if (!plan.generated()) read_gguf_tensor(*file, plan);
  });
  return 0;
}
