// open_packed_folder on config.json + model.safetensors, every Linear read.
// The quantization_config picks GPTQ, AWQ, compressed-tensors or bitsandbytes
// NF4; model.safetensors is the input's second file. Each packed Linear's
// grid is read back and dequantized, as `ptq export` does, and the whole
// folder dequantized, as `ptq eval` does.
#include "fuzz_util.hpp"
#include "pipeline/formats/bnb_pack.hpp"
#include "pipeline/formats/packed_folder.hpp"

namespace {

// A tensor whose name ends so marks a packed Linear in one of the formats.
constexpr std::string_view kMarkers[] = {".qweight", ".weight_scale", ptq::kBnbQuantState};

std::vector<std::string> packed_linears(const std::filesystem::path& dir) {
  std::vector<std::string> bases;
  const ptq::Checkpoint checkpoint = ptq::Checkpoint::open(dir);
  for (const ptq::TensorView* t : checkpoint.tensors())
    for (const std::string_view marker : kMarkers)
      if (t->name.ends_with(marker))
        bases.push_back(t->name.substr(0, t->name.size() - marker.size()));
  return bases;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto files = fuzz::split_files(fuzz::as_text(data, size), 2);
  fuzz::put_file("config.json", files[0]);
  fuzz::put_file("model.safetensors", files[1]);
  const auto& dir = fuzz::scratch_dir();
  fuzz::refuse_cleanly([&] {
    const std::optional<PackedFolder> folder = open_packed_folder(dir);
    if (!folder) return;
    for (const std::string& base : packed_linears(dir))
      fuzz::refuse_cleanly([&] { dequantize(folder->linear(base)); });
    folder->dequantized();
  });
  return 0;
}
