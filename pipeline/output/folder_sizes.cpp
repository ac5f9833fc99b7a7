#include "pipeline/output/folder_sizes.hpp"

#include <fstream>

#include "calibrate/tensor_names.hpp"
#include "io/gguf.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "pipeline/formats/gguf_model.hpp"

namespace ptq {

namespace {

// "model.layers.<i>.<module>." of every decoder block Linear (a fused module once
// per part it holds, each expert's own).
std::vector<std::string> linear_prefixes(const ModelConfig& config) {
  std::vector<std::string> out;
  for (int layer = 0; layer < config.num_layers; ++layer)
    for (const LinearKey& key : block_linears(config, layer))
      out.push_back(linear_weight_module(config, key) + ".");
  return out;
}

bool is_linear_tensor(const std::string& hf_name, const std::vector<std::string>& prefixes) {
  if (hf_name.ends_with(".bias")) return false;
  for (const auto& p : prefixes)
    if (hf_name.starts_with(p)) return true;
  return false;
}

// The folder's config and the bytes its model file spends on the block Linears.
std::pair<ModelConfig, std::uintmax_t> linear_bytes(const std::filesystem::path& dir,
                                                    OutputFormat format) {
  std::uintmax_t bytes = 0;
  if (format == OutputFormat::gguf) {
    const auto file = gguf::File::open(dir / "model.gguf");
    const ModelConfig config = gguf_model_config(*file);
    const auto prefixes = linear_prefixes(config);
    for (const GgufTensorPlan& plan : gguf_file_plan(*file, config))
      if (is_linear_tensor(plan.experts.empty() ? plan.hf_name : plan.experts[0].hf_name, prefixes))
        bytes += file->require_tensor(plan.gguf_name).data.size();
    return {config, bytes};
  }
  const ModelConfig config = load_model_config(dir);
  const auto prefixes = linear_prefixes(config);
  const Checkpoint checkpoint = Checkpoint::open(dir);
  for (const TensorView* t : checkpoint.tensors())
    if (is_linear_tensor(t->name, prefixes)) bytes += t->bytes.size();
  return {config, bytes};
}

}  // namespace

FolderSizes folder_sizes(const std::filesystem::path& dir, OutputFormat format,
                         std::optional<std::int64_t> parameters) {
  FolderSizes s;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) {
      s.files[e.path().filename().string()] = e.file_size();
      s.total += e.file_size();
    }
  const auto [config, bytes] = linear_bytes(dir, format);
  s.linear_bits_per_weight =
      8.0 * static_cast<double>(bytes) / (double(block_linear_weights(config)) * config.num_layers);
  if (parameters)
    s.folder_bits_per_parameter =
        8.0 * static_cast<double>(s.total) / static_cast<double>(*parameters);
  return s;
}

nlohmann::ordered_json folder_sizes_json(const FolderSizes& sizes, OutputFormat format) {
  nlohmann::ordered_json j = {{"format", std::string(output_format_info(format).name)},
                              {"linear_bits_per_weight", sizes.linear_bits_per_weight}};
  if (sizes.folder_bits_per_parameter > 0)
    j["folder_bits_per_parameter"] = sizes.folder_bits_per_parameter;
  j["folder_bytes"] = sizes.total;
  j["files"] = sizes.files;
  return j;
}

std::optional<OutputFormat> packed_format_of(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json");
  if (!in) return std::nullopt;
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.contains("quantization_config")) return std::nullopt;
  const std::string method = config["quantization_config"].value("quant_method", "");
  for (const OutputFormatInfo& f : output_formats())
    if (!f.quant_method.empty() && f.quant_method == method) return f.format;
  return std::nullopt;
}

}  // namespace ptq
