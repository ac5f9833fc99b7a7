#include "pipeline/quantize/export_run.hpp"

#include <chrono>
#include <map>

#include "calibrate/tensor_names.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/model_config.hpp"
#include "pipeline/formats/packed_folder.hpp"
#include "pipeline/formats/weight_record.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/output/block_scales.hpp"
#include "pipeline/quantize/experts.hpp"

namespace ptq {

namespace {

// The run's recipe with the new format, checked against it before any work.
Recipe export_recipe(const H5Reader& record, const ExportJob& job) {
  const std::string where = record.path().string() + ": recipe";
  Recipe r = recipe_from_yaml(record.string_attribute("/", "recipe"), where);
  r.format = job.format;
  r.format_given = true;
  r.gguf_type = job.gguf_type;
  r.imatrix.clear();
  r.apply_implied_defaults();
  r.validate();
  return r;
}

// A Linear of a packed folder: its module, or its rows of a fused one (a fused
// module unpacked once, kept in `fused` for its other parts).
QuantizedWeight packed_linear(const PackedFolder& packed, const ModelConfig& config,
                              const LinearKey& key, std::map<std::string, QuantizedWeight>& fused) {
  const std::string module = linear_weight_module(config, key);
  if (key.expert >= 0) return packed.linear(module);
  const LinearStorage stored = linear_storage(config, key.role);
  const int rows = linear_out_features(config, key.role);
  if (stored.rows == rows) return packed.linear(module);
  auto it = fused.find(module);
  if (it == fused.end()) it = fused.emplace(module, packed.linear(module)).first;
  return slice_rows(it->second, stored.first_row, rows, module);
}

std::vector<QuantizedLinear> run_linears(const H5Reader& record,
                                         const std::optional<PackedFolder>& packed,
                                         const ModelConfig& config) {
  std::vector<QuantizedLinear> linears;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    std::map<std::string, QuantizedWeight> fused;
    for (const LinearKey& key : block_linears(config, layer))
      linears.push_back({layer, key.role,
                         packed ? packed_linear(*packed, config, key, fused)
                                : read_weight(record, linear_group_path(key)),
                         read_linear_report(record, key), key.expert});
  }
  return linears;
}

}  // namespace

void export_run(const ExportJob& job) {
  const auto start = std::chrono::steady_clock::now();
  if (std::filesystem::exists(job.run / "model.gguf"))
    throw input_error("ptq export --from " + job.run.string(), "a Hugging Face folder",
                      "a GGUF run (not exported from yet)");
  const H5Reader record(job.run / "quantized.h5");
  const Recipe recipe = export_recipe(record, job);
  const ModelConfig config = load_model_config(job.run);
  require_expert_support(config, recipe);
  const std::optional<PackedFolder> packed = open_packed_folder(job.run);
  if (!packed && record.has_attribute("/", "weights"))
    throw input_error(job.run.string(), "a packed folder or a dequantized run's codes",
                      "a record without codes and no quantization_config");
  const QuantizedLinears linears(run_linears(record, packed, config));
  ModelExtras extras;
  extras.activations = load_activation_quant(job.run, config.num_layers);
  if (recipe.folds_scales())
    for (int layer = 0; layer < config.num_layers; ++layer)
      extras.scales.push_back(read_block_scales(record, layer, config, recipe.quant_spec()));
  const Checkpoint tensors = packed ? packed->dequantized() : Checkpoint::open(job.run);
  OutputOptions options = job.output;
  options.exported = ExportedRun{&tensors, record.string_attribute("/", "source_model"),
                                 record.string_attribute("/", "source_model_hash")};
  RunInfo run;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_quantized_model(job.run, job.out, recipe, nullptr, linears, run, options, extras);
}

}  // namespace ptq
