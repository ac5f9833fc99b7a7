// Checkpoint::open on model.safetensors.index.json beside two fixed shards.
// The weight_map, its shard names (plain names in the index's folder only) and
// the tensors each shard must hold.
#include "fuzz_util.hpp"
#include "io/safetensors.hpp"

namespace {

// The shards the seeds' index names: a and b in the first, c in the second.
void write_shards() {
  using ptq::DType;
  const std::vector<float> values(8, 0.5f);
  const auto bytes = std::as_bytes(std::span(values));
  const ptq::TensorToWrite a{"a", DType::F32, {2, 2}, bytes.first(16)};
  const ptq::TensorToWrite b{"b", DType::F32, {4}, bytes.first(16)};
  const ptq::TensorToWrite c{"c", DType::F32, {8}, bytes};
  ptq::write_safetensors(ptq::fuzz::scratch_dir() / "model-00001-of-00002.safetensors",
                         std::vector{a, b});
  ptq::write_safetensors(ptq::fuzz::scratch_dir() / "model-00002-of-00002.safetensors",
                         std::vector{c});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  static const bool shards = (write_shards(), true);
  (void)shards;
  const auto path = fuzz::write_file("model.safetensors.index.json", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] {
    const Checkpoint checkpoint = Checkpoint::open(path);
    for (const TensorView* t : checkpoint.tensors()) t->to_float();
  });
  return 0;
}
