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

// A planned tensor as the checkpoint tensors it holds: itself, or a stacked
// expert tensor's Linears in the per-expert layout.
void decode_into(const gguf::File& file, const GgufTensorPlan& plan,
                 std::vector<OwnedTensor>& tensors) {
  const MatrixRM m = read_gguf_tensor(file, plan);
  if (plan.experts.empty()) {
    tensors.push_back(OwnedTensor::float32(plan.hf_name,
                                           plan.ne.size() == 1
                                               ? std::vector<std::int64_t>{m.cols()}
                                               : std::vector<std::int64_t>{m.rows(), m.cols()},
                                           {m.data(), static_cast<std::size_t>(m.size())}));
    return;
  }
  const std::int64_t rows = plan.ne.at(1);
  for (std::size_t i = 0; i < plan.experts.size(); ++i)
    tensors.push_back(
        OwnedTensor::float32(plan.experts[i].hf_name, {rows, m.cols()},
                             {m.data() + static_cast<std::ptrdiff_t>(i) * rows * m.cols(),
                              static_cast<std::size_t>(rows * m.cols())}));
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
    if (!plan.generated()) decode_into(*file, plan, tensors);  // rope_freqs: in config
  return Model::from_checkpoint(*gguf_path, std::move(config),
                                Checkpoint::from_memory(*gguf_path, std::move(tensors)));
}

}  // namespace ptq
