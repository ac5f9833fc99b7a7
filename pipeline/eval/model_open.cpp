#include "pipeline/eval/model_open.hpp"

#include "io/gguf.hpp"
#include "io/model_config.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/packed_folder.hpp"

namespace ptq {

std::optional<std::filesystem::path> gguf_model_file(const std::filesystem::path& path) {
  if (std::filesystem::is_regular_file(path) && path.extension() == ".gguf") return path;
  if (std::filesystem::is_directory(path) &&
      std::filesystem::is_regular_file(path / "model.gguf") &&
      !std::filesystem::exists(path / "config.json"))
    return path / "model.gguf";
  return std::nullopt;
}

namespace {

OwnedTensor decoded(const gguf::File& file, const GgufTensorPlan& plan) {
  const MatrixRM m = read_gguf_tensor(file, plan);
  return OwnedTensor::float32(plan.hf_name,
                              plan.ne.size() == 1 ? std::vector<std::int64_t>{m.cols()}
                                                  : std::vector<std::int64_t>{m.rows(), m.cols()},
                              {m.data(), static_cast<std::size_t>(m.size())});
}

}  // namespace

Model open_model(const std::filesystem::path& path) {
  const auto gguf_path = gguf_model_file(path);
  if (!gguf_path) {
    const std::optional<PackedFolder> packed = open_packed_folder(path);
    if (!packed) return Model::open(path);
    return Model::from_checkpoint(path, load_model_config(path), packed->dequantized());
  }
  const auto file = gguf::File::open(*gguf_path);
  ModelConfig config = gguf_model_config(*file);
  std::vector<OwnedTensor> tensors;
  for (const GgufTensorPlan& plan : gguf_file_plan(*file, config))
    if (!plan.hf_name.empty()) tensors.push_back(decoded(*file, plan));  // rope_freqs: in config
  return Model::from_checkpoint(*gguf_path, std::move(config),
                                Checkpoint::from_memory(*gguf_path, std::move(tensors)));
}

}  // namespace ptq
