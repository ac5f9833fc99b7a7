#include "pipeline/output/packed_output.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "calibrate/tensor_names.hpp"
#include "io/error.hpp"
#include "io/text_file.hpp"
#include "pipeline/formats/awq_pack.hpp"
#include "pipeline/formats/bit_stream.hpp"
#include "pipeline/formats/bnb_pack.hpp"
#include "pipeline/formats/ct_pack.hpp"

namespace ptq {

namespace {

template <class T>
PackedTensor tensor(std::string name, DType dtype, std::vector<std::int64_t> shape,
                    const std::vector<T>& values) {
  PackedTensor t{std::move(name), dtype, std::move(shape),
                 std::vector<std::byte>(values.size() * sizeof(T))};
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

std::vector<PackedTensor> gptq_tensors(const std::string& base, const QuantizedMatrix& m,
                                       GptqZeros zeros, const std::string& where) {
  const GptqLinear l = pack_gptq(m, zeros, where);
  const auto words = [&](std::int64_t n) { return bit_stream::words_for(n, l.bits); };
  return {tensor(base + ".qweight", DType::I32, {words(l.in), l.out}, l.qweight),
          tensor(base + ".qzeros", DType::I32, {l.groups, words(l.out)}, l.qzeros),
          tensor(base + ".scales", DType::F16, {l.groups, l.out}, l.scales),
          tensor(base + ".g_idx", DType::I32, {l.in}, l.g_idx)};
}

std::vector<PackedTensor> compressed_tensors(const std::string& base, const QuantizedMatrix& m,
                                             const std::string& where) {
  const CompressedLinear l = pack_compressed(m, where);
  const auto words = [&](std::int64_t n) { return bit_stream::words_for(n, l.bits); };
  std::vector<PackedTensor> out = {
      tensor(base + ".weight_packed", DType::I32, {l.out, words(l.in)}, l.weight_packed),
      tensor(base + ".weight_scale", DType::F16, {l.out, l.groups}, l.weight_scale),
      tensor(base + ".weight_shape", DType::I64, {2}, std::vector<std::int64_t>{l.out, l.in})};
  if (!l.symmetric)
    out.push_back(tensor(base + ".weight_zero_point", DType::I32, {words(l.out), l.groups},
                         l.weight_zero_point));
  return out;
}

// W8A8: int-quantized int8 weights, and the static input scale of the
// Linear's input when activations are per tensor.
std::vector<PackedTensor> int8_tensors(const std::string& base, const QuantizedLinear& q,
                                       const ActivationQuant& activations,
                                       const std::string& where) {
  const Int8Linear l = pack_int8(std::get<QuantizedMatrix>(q.weight), where);
  std::vector<PackedTensor> out = {
      tensor(base + ".weight", DType::I8, {l.out, l.in}, l.weight),
      tensor(base + ".weight_scale", DType::F32, {l.out, 1}, l.weight_scale)};
  if (activations.granularity == ActGranularity::Tensor) {
    const auto input = static_cast<std::size_t>(linear_spec(q.role).input);
    out.push_back(tensor(base + ".input_scale", DType::F32, {1},
                         std::vector<float>{activations.static_scales.at(q.layer)[input]}));
  }
  return out;
}

std::vector<PackedTensor> awq_tensors(const std::string& base, const QuantizedMatrix& m,
                                      const std::string& where) {
  const AwqLinear l = pack_awq(m, where);
  return {tensor(base + ".qweight", DType::I32, {l.in, l.out / 8}, l.qweight),
          tensor(base + ".qzeros", DType::I32, {l.groups, l.out / 8}, l.qzeros),
          tensor(base + ".scales", DType::F16, {l.groups, l.out}, l.scales)};
}

std::vector<PackedTensor> bnb_tensors(const std::string& base, const Nf4Matrix& m, DType dtype,
                                      const std::string& where) {
  const BnbLinear l = pack_bnb_nf4(m, dtype, where);
  const std::string state = bnb_quant_state_json(l);
  const auto n = [](const auto& v) { return static_cast<std::int64_t>(v.size()); };
  return {tensor(base + ".weight", DType::U8, {n(l.weight), 1}, l.weight),
          tensor(base + ".weight.absmax", DType::U8, {n(l.absmax_codes)}, l.absmax_codes),
          tensor(base + ".weight.quant_map", DType::F32, {n(l.quant_map)}, l.quant_map),
          tensor(base + ".weight.nested_absmax", DType::F32, {n(l.nested_absmax)}, l.nested_absmax),
          tensor(base + ".weight.nested_quant_map", DType::F32, {n(l.nested_quant_map)},
                 l.nested_quant_map),
          tensor(base + std::string(kBnbQuantState), DType::U8, {n(state)},
                 std::vector<char>(state.begin(), state.end()))};
}

// The routers and the quantized modules' names by input (PackedLayout).
void describe_experts(const ModelConfig& config, const QuantizedLinears& linears,
                      PackedLayout& layout) {
  for (int layer = 0; layer < config.num_layers; ++layer)
    if (config.is_moe(layer))
      layout.float_linears.push_back(per_expert_tensors(config, layer).router);
  layout.block_modules.resize(static_cast<std::size_t>(LinearInput::mlp_hidden) + 1);
  for (std::size_t i = 0; i < linears.size(); ++i) {
    const LinearReport& r = linears.report(i);
    const std::string prefix = block_tensor_name(r.layer, "");
    const std::string module = linear_weight_module(config, {r.layer, r.role, r.expert});
    auto& group = layout.block_modules[static_cast<std::size_t>(linear_spec(r.role).input)];
    const std::string name = module.substr(prefix.size());
    if (std::find(group.begin(), group.end(), name) == group.end()) group.push_back(name);
  }
  std::erase_if(layout.block_modules, [](const auto& g) { return g.empty(); });
}

// A mixture-of-experts model's routers stay in float: each format's loader is
// told so (GPTQ: by the modules it quantizes; AWQ: modules_to_not_convert;
// compressed-tensors: ignore).
void keep_routers_float(nlohmann::ordered_json& q, OutputFormat format,
                        const PackedLayout& layout) {
  if (layout.float_linears.empty()) return;
  if (format == OutputFormat::gptq) {
    q["modules_in_block_to_quantize"] = layout.block_modules;
  } else if (format == OutputFormat::awq) {
    q["modules_to_not_convert"] = layout.float_linears;
  } else if (format == OutputFormat::compressed_tensors) {
    for (const std::string& router : layout.float_linears) q["ignore"].push_back(router);
  }
}

}  // namespace

PackedLayout packed_layout(const ModelConfig& config, const QuantizedLinears& linears,
                           OutputFormat format, const Checkpoint& source,
                           const std::optional<ActivationQuant>& activations) {
  PackedLayout layout;
  layout.activations = activations;
  // The embedding's: every format keeps it as the source stores it.
  if (const auto* t = source.find(std::string(embed_tokens_name)); t != nullptr)
    layout.dtype = t->dtype;
  if (format == OutputFormat::compressed_tensors && !activations) {
    linears.for_each([&](const QuantizedLinear& q) {  // the Linears by grid, in order of first use
      const QuantSpec& spec = std::get<QuantizedMatrix>(q.weight).spec;
      auto it = std::find_if(layout.grids.begin(), layout.grids.end(),
                             [&](const auto& g) { return g.spec == spec; });
      if (it == layout.grids.end()) it = layout.grids.insert(layout.grids.end(), {spec, {}});
      // A fused module once, under its own name (its parts share one grid).
      const std::string module = linear_weight_module(config, q.key());
      if (it->modules.empty() || it->modules.back() != module) it->modules.push_back(module);
    });
    if (layout.grids.size() == 1) layout.grids.clear();  // one grid: every Linear
  }
  if (config.has_moe()) describe_experts(config, linears, layout);
  if (format != OutputFormat::gptq) return layout;
  linears.for_each([&](const QuantizedLinear& q) {
    if (gptq_zeros_needed(std::get<QuantizedMatrix>(q.weight)) == GptqZeros::v2)
      layout.zeros = GptqZeros::v2;
  });
  return layout;
}

std::vector<PackedTensor> packed_linear_tensors(OutputFormat format, const std::string& weight_name,
                                                const QuantizedLinear& q,
                                                const PackedLayout& layout) {
  constexpr std::string_view kWeight = ".weight";
  PTQ_ASSERT(weight_name.ends_with(kWeight));
  const std::string base = weight_name.substr(0, weight_name.size() - kWeight.size());
  if (format == OutputFormat::bnb_nf4)
    return bnb_tensors(base, std::get<Nf4Matrix>(q.weight), layout.dtype, weight_name);
  if (layout.activations) {
    PTQ_ASSERT(format == OutputFormat::compressed_tensors);
    return int8_tensors(base, q, *layout.activations, weight_name);
  }
  const auto& m = std::get<QuantizedMatrix>(q.weight);
  if (format == OutputFormat::gptq) return gptq_tensors(base, m, layout.zeros, weight_name);
  if (format == OutputFormat::awq) return awq_tensors(base, m, weight_name);
  PTQ_ASSERT(format == OutputFormat::compressed_tensors);
  return compressed_tensors(base, m, weight_name);
}

void write_packed_config(const std::filesystem::path& dir, const Recipe& recipe,
                         const PackedLayout& layout) {
  nlohmann::ordered_json q;
  if (recipe.format == OutputFormat::gptq) {
    const GptqCheckpointGrid grid{recipe.quant_spec(), layout.zeros,
                                  recipe.order == ColumnOrder::ActivationOrder};
    q = gptq_quantization_config(grid, recipe.group_grids == GroupGrids::Static, recipe.damp);
    keep_routers_float(q, recipe.format, layout);
    write_text_atomic(dir / "quantize_config.json", q.dump(2) + "\n");
  } else if (recipe.format == OutputFormat::awq) {
    q = awq_quantization_config(recipe.quant_spec());
  } else if (recipe.format == OutputFormat::bnb_nf4) {
    q = bnb_quantization_config(layout.dtype);
  } else if (layout.activations) {
    q = compressed_tensors_w8a8_config(layout.activations->granularity == ActGranularity::Token
                                           ? CtActivations::token
                                           : CtActivations::tensor);
  } else if (!layout.grids.empty()) {  // a mix: one config group per grid
    q = compressed_tensors_config(layout.grids, recipe.order == ColumnOrder::ActivationOrder);
  } else {
    q = compressed_tensors_config(recipe.quant_spec(),
                                  recipe.order == ColumnOrder::ActivationOrder);
  }
  if (recipe.format != OutputFormat::gptq) keep_routers_float(q, recipe.format, layout);
  std::ifstream in(dir / "config.json");
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(in);
  config["quantization_config"] = q;
  write_text_atomic(dir / "config.json", config.dump(2) + "\n");
}

}  // namespace ptq
