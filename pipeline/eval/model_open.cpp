#include "pipeline/eval/model_open.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf.hpp"
#include "io/model_config.hpp"
#include "pipeline/formats/awq_pack.hpp"
#include "pipeline/formats/bnb_pack.hpp"
#include "pipeline/formats/ct_pack.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/gptq_pack.hpp"

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

// A packed Hugging Face folder (GPTQ, AWQ, compressed-tensors or bitsandbytes) with its Linears
// dequantized, when config.json's quantization_config names one.
std::optional<Checkpoint> dequantized_packed_folder(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  if (!std::filesystem::is_regular_file(config_path)) return std::nullopt;
  std::ifstream in(config_path);
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded()) return std::nullopt;  // Model::open names the parse error
  if (const auto grid = read_gptq_quantization_config(config, config_path.string()))
    return dequantized_gptq_checkpoint(dir, Checkpoint::open(dir), *grid);
  if (const auto spec = read_awq_quantization_config(config, config_path.string()))
    return dequantized_awq_checkpoint(dir, Checkpoint::open(dir), *spec);
  if (const auto scheme = read_compressed_tensors_config(config, config_path.string()))
    return dequantized_compressed_checkpoint(dir, Checkpoint::open(dir), *scheme);
  if (read_bnb_quantization_config(config, config_path.string()))
    return dequantized_bnb_checkpoint(dir, Checkpoint::open(dir));
  return std::nullopt;
}

}  // namespace

Model open_model(const std::filesystem::path& path) {
  const auto gguf_path = gguf_model_file(path);
  if (!gguf_path) {
    std::optional<Checkpoint> packed = dequantized_packed_folder(path);
    if (!packed) return Model::open(path);
    return Model::from_checkpoint(path, load_model_config(path), std::move(*packed));
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
