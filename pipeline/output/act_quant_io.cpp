#include "pipeline/output/act_quant_io.hpp"

#include <nlohmann/json.hpp>

#include "calibrate/tensor_names.hpp"
#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"
#include "io/text_file.hpp"
#include "pipeline/formats/ct_pack.hpp"
#include "pipeline/formats/packed_checkpoint.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

namespace {

constexpr const char* kScalesDataset = "activations/scales";

// The activations of a compressed-tensors int-quantized W8A8 folder, from its
// quantization_config and (static) each Linear's input_scale; none otherwise.
std::optional<ActivationQuant> compressed_tensors_activations(const std::filesystem::path& dir,
                                                              const nlohmann::json& config,
                                                              int num_layers) {
  const std::string where = (dir / "config.json").string();
  const auto ct = read_compressed_tensors_config(config, where);
  const CtActivations activations = ct ? ct->activations(where) : CtActivations::none;
  if (activations == CtActivations::none) return std::nullopt;
  if (activations == CtActivations::token) return ActivationQuant{ActGranularity::Token, {}};
  ActivationQuant q{ActGranularity::Tensor, std::vector<InputScales>(num_layers, InputScales{})};
  const Checkpoint checkpoint = Checkpoint::open(dir);
  const ModelConfig model = load_model_config(dir);
  for (int layer = 0; layer < num_layers; ++layer)
    for (const LinearKey& key : block_linears(model, layer)) {
      // The parts of a fused module read its one scale; every expert has its own.
      const std::string name = linear_weight_module(model, key) + ".input_scale";
      const auto v = packed_values<float>(checkpoint, name, DType::F32);
      require_size(dir.string() + ": " + name, "input_scale", v.size(), 1);
      float& slot = q.static_scales[layer][static_cast<std::size_t>(linear_spec(key.role).input)];
      if (slot != 0.0f && slot != v[0])  // ptq rounds each block input once for all its readers
        throw input_error(dir.string() + ": " + name,
                          "the input_scale of the other Linears that read the same input",
                          std::to_string(v[0]) + " against " + std::to_string(slot));
      slot = v[0];
    }
  return q;
}

}  // namespace

void write_activation_config(const std::filesystem::path& config_json,
                             const ActivationQuant& scheme) {
  nlohmann::ordered_json config = read_json_file(config_json);
  config[std::string(kActivationQuantKey)] = {
      {"bits", 8},
      {"symmetric", true},
      {"granularity", std::string(act_granularity_name(scheme.granularity))}};
  write_text_atomic(config_json, config.dump(2) + "\n");
}

void write_activation_scales(H5Writer& out, const ActivationQuant& scheme) {
  if (scheme.granularity != ActGranularity::Tensor) return;
  std::vector<float> flat;
  for (const auto& layer : scheme.static_scales)
    flat.insert(flat.end(), layer.begin(), layer.end());
  out.write<float>(
      kScalesDataset, flat,
      {static_cast<std::int64_t>(scheme.static_scales.size()), std::int64_t{linear_input_count}});
}

std::optional<ActivationQuant> load_activation_quant(const std::filesystem::path& model_dir,
                                                     int num_layers) {
  const auto config_path = model_dir / "config.json";
  if (!std::filesystem::exists(config_path)) return std::nullopt;  // a GGUF file or folder
  const nlohmann::ordered_json config = read_json_file(config_path);
  const auto it = config.find(std::string(kActivationQuantKey));
  if (it == config.end()) {
    auto scheme = compressed_tensors_activations(model_dir, config, num_layers);
    if (scheme) scheme->validate(num_layers);
    return scheme;
  }
  const std::string where = config_path.string() + ": " + std::string(kActivationQuantKey);
  if (!it->is_object() || it->value("bits", 0) != 8 || !it->contains("granularity") ||
      !(*it)["granularity"].is_string())
    throw input_error(where, "{\"bits\": 8, \"granularity\": \"token\" | \"tensor\"}", it->dump());
  ActivationQuant scheme;
  scheme.granularity =
      parse_act_granularity((*it)["granularity"].get<std::string>(), where + ".granularity");
  if (scheme.granularity == ActGranularity::Tensor) {
    const H5Reader h5(model_dir / "quantized.h5");
    const auto shape = h5.shape(kScalesDataset);
    if (shape != std::vector<std::int64_t>{num_layers, linear_input_count})
      throw input_error(
          h5.path().string() + ": " + kScalesDataset,
          "[" + std::to_string(num_layers) + ", " + std::to_string(linear_input_count) + "]",
          "another shape");
    const auto flat = h5.read<float>(kScalesDataset);
    scheme.static_scales.resize(num_layers);
    for (int l = 0; l < num_layers; ++l)
      for (int i = 0; i < linear_input_count; ++i)
        scheme.static_scales[l][i] = flat[l * linear_input_count + i];
  }
  scheme.validate(num_layers);
  return scheme;
}

}  // namespace ptq
