#include "pipeline/output/quantized_output.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hash.hpp"
#include "io/hdf5.hpp"
#include "io/output_path.hpp"
#include "io/safetensors.hpp"
#include "io/text_file.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/output/folder_sizes.hpp"
#include "pipeline/output/gguf_output.hpp"
#include "pipeline/output/packed_output.hpp"
#include "pipeline/output/progress.hpp"
#include "pipeline/output/quantized_model.hpp"
#include "pipeline/recipe/provenance.hpp"

namespace ptq {

namespace {

constexpr float kHalfMax = 65504.0f;  // largest finite IEEE float16
constexpr std::string_view kGgufFile = "model.gguf";
constexpr std::string_view kMixFile = "mix.json";
constexpr std::string_view kSafetensorsFile = "model.safetensors";

// Files a loader needs beside the weights; copied when present.
constexpr std::array<std::string_view, 8> kCopiedFiles = {"config.json",
                                                          "generation_config.json",
                                                          "tokenizer.json",
                                                          "tokenizer_config.json",
                                                          "special_tokens_map.json",
                                                          "tokenizer.model",
                                                          "vocab.json",
                                                          "merges.txt"};

struct OutTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> owned;      // dequantized float16 bytes, or empty
  std::span<const std::byte> bytes;  // owned or a view into the source checkpoint
};

// Float16 bytes of a dequantized matrix; counts values beyond float16's range.
std::vector<std::byte> to_half_bytes(const MatrixRM& m, std::int64_t& overflow) {
  std::vector<std::byte> out(static_cast<std::size_t>(m.size()) * 2);
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    const float v = m.data()[i];
    if (std::fabs(v) > kHalfMax) ++overflow;
    const std::uint16_t h = float_to_half(v);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// The tensors written in place of source tensor `t`: itself (a view into the
// source), a method's float32 replacement, or its quantized Linear `q` packed
// or dequantized to float16.
std::vector<OutTensor> tensors_for(const TensorView& t, const QuantizedLinear* q,
                                   const ReplacedTensor* replaced, OutputFormat format,
                                   const PackedLayout& layout, std::vector<std::string>& warnings) {
  std::vector<OutTensor> out;
  if (q != nullptr && format != OutputFormat::dequantized) {
    for (auto& p : packed_linear_tensors(format, t.name, *q, layout))
      out.push_back({p.name, p.dtype, p.shape, std::move(p.bytes), {}});
    for (auto& o : out) o.bytes = o.owned;
    return out;
  }
  OutTensor o{t.name, t.dtype, t.shape, {}, t.bytes};
  if (replaced != nullptr) {
    PTQ_ASSERT(static_cast<std::int64_t>(replaced->values.size()) == t.numel());
    o.dtype = DType::F32;
    o.owned.resize(replaced->values.size() * sizeof(float));
    std::memcpy(o.owned.data(), replaced->values.data(), o.owned.size());
  }
  if (q != nullptr) {
    std::int64_t overflow = 0;
    o.dtype = DType::F16;
    o.owned = to_half_bytes(q->dequantize(), overflow);
    if (overflow > 0)
      throw input_error(t.name + " dequantized to float16",
                        "weights within float16's range (65504; --format gguf or a packed format "
                        "keeps them)",
                        std::to_string(overflow) + " beyond it, which would be inf");
    const auto* uniform = std::get_if<QuantizedMatrix>(&q->weight);
    const float max_scale = uniform != nullptr && uniform->scales.size() > 0
                                ? uniform->scales.cwiseAbs().maxCoeff()
                                : 0.0f;
    if (max_scale > kHalfMax)
      warnings.push_back(t.name + ": a scale (" + std::to_string(max_scale) +
                         ") exceeds float16; packed float16-scale formats cannot hold it");
  }
  if (!o.owned.empty()) o.bytes = o.owned;
  out.push_back(std::move(o));
  return out;
}

// An exported run's config.json states its own format: its quantization_config
// and int8 activation record go (the writers below add this format's).
void drop_format_keys(const std::filesystem::path& config_json) {
  if (!std::filesystem::exists(config_json)) return;
  std::ifstream in(config_json);
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(in, nullptr, false);
  if (!config.is_object() || (!config.contains("quantization_config") &&
                              !config.contains(std::string(kActivationQuantKey))))
    return;
  config.erase("quantization_config");
  config.erase(std::string(kActivationQuantKey));
  write_text_atomic(config_json, config.dump(2) + "\n");
}

// A source in transformers v5's stacked expert layout is written in the
// per-expert layout every Hugging Face format stores: each stacked tensor as
// its Linears, one per expert in expert order, and the router under that
// layout's name (Mixtral's block_sparse_moe.gate).
struct ExpertLayout {
  std::map<std::string, std::vector<LinearKey>> stacked;
  std::map<std::string, std::string> router_names;  // source name -> written name
};

ExpertLayout per_expert_layout(const ModelConfig& c, const Checkpoint& source) {
  ExpertLayout out;
  const auto has = [&](const std::string& name) { return source.find(name) != nullptr; };
  for (int layer = 0; layer < c.num_layers; ++layer) {
    if (!c.is_moe(layer)) continue;
    const MoeTensors source_names = moe_tensors(c, layer, has);
    if (!source_names.stacked) continue;
    out.router_names[source_names.router + ".weight"] =
        per_expert_tensors(c, layer).router + ".weight";
    auto& gate_up = out.stacked[block_tensor_name(layer, stacked_gate_up_suffix)];
    auto& down = out.stacked[block_tensor_name(layer, stacked_down_suffix)];
    for (int e = 0; e < c.moe.experts; ++e) {
      gate_up.push_back({layer, LinearRole::gate, e});
      gate_up.push_back({layer, LinearRole::up, e});
      down.push_back({layer, LinearRole::down, e});
    }
  }
  return out;
}

// model.safetensors, or shards of at most max_shard_bytes (a larger tensor
// alone) with their index: tensors in the source's order, each produced and
// written before the next, so one Linear's output is in memory at a time.
void write_weights(const std::filesystem::path& dir, const Checkpoint& source,
                   const ModelConfig& config, const QuantizedLinears& linears,
                   const ModelExtras& extras, OutputFormat format, const PackedLayout& layout,
                   std::uint64_t max_shard_bytes, std::vector<std::string>& warnings) {
  std::map<std::string, const ReplacedTensor*> replaced;
  for (const auto& r : extras.tensors) replaced[r.name] = &r;
  const auto quantized = linears.by_weight_name(config);
  std::vector<std::unique_ptr<SafetensorsStreamWriter>> shards;
  auto new_shard = [&] {
    const std::string data = ".shard-" + std::to_string(shards.size()) + ".data";
    shards.push_back(std::make_unique<SafetensorsStreamWriter>(dir / data));
  };
  new_shard();
  auto write = [&](const TensorView& t, const ReplacedTensor* r) {
    const auto q = quantized.find(t.name);
    const auto linear = q == quantized.end() ? nullptr : linears.get(q->second, t.name);
    for (const OutTensor& o : tensors_for(t, linear.get(), r, format, layout, warnings)) {
      const std::uint64_t in_shard = shards.back()->data_bytes();
      if (in_shard > 0 && in_shard + o.bytes.size() > max_shard_bytes) new_shard();
      shards.back()->add({o.name, o.dtype, o.shape, o.bytes});
    }
  };
  const ExpertLayout experts = per_expert_layout(config, source);
  for (const TensorView* t : source.tensors()) {
    const auto s = experts.stacked.find(t->name);
    if (s == experts.stacked.end()) {
      const auto r = replaced.find(t->name);
      TensorView renamed = *t;
      if (const auto n = experts.router_names.find(t->name); n != experts.router_names.end())
        renamed.name = n->second;
      write(renamed, r == replaced.end() ? nullptr : r->second);
      continue;
    }
    for (const LinearKey& key : s->second) {  // one quantized Linear per expert
      const std::string name = linear_weight_module(config, key) + ".weight";
      PTQ_ASSERT(quantized.contains(name));
      const auto [out, in] = expert_shape(config, expert_linear(key.role));
      write({name, DType::F16, {out, in}, {}, t->file}, nullptr);
    }
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards.size() == 1) {
    shards[0]->finish(dir / kSafetensorsFile, meta);
    return;
  }
  nlohmann::ordered_json index;
  std::uint64_t total = 0;
  for (const auto& shard : shards) total += shard->data_bytes();
  index["metadata"]["total_size"] = total;
  char name[64];
  for (std::size_t s = 0; s < shards.size(); ++s) {
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    for (const auto& t : shards[s]->names()) index["weight_map"][t] = name;
    shards[s]->finish(dir / name, meta);
  }
  write_text_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

void write_manifest(const std::filesystem::path& path, const std::filesystem::path& source,
                    const Recipe& recipe, const CalibrationSet* calibration,
                    const QuantizedLinears& linears, const ModelExtras& extras,
                    const std::optional<ExportedRun>& exported, WindowRecord windows,
                    const std::string& source_hash) {
  H5Writer out(path);
  out.set_attribute("/", "format", std::string("ptq-quantized"));
  out.set_attribute("/", "format_version", std::int64_t{1});
  if (exported) {
    out.set_attribute("/", "exported_from", source.filename().string());
    out.set_attribute("/", "source_model", exported->source_model);
    out.set_attribute("/", "source_model_hash", exported->source_model_hash);
  } else {
    out.set_attribute("/", "source_model", source.filename().string());
    out.set_attribute("/", "source_model_hash",
                      source_hash.empty() ? model_hash(source) : source_hash);
  }
  out.set_attribute("/", "recipe", recipe_to_yaml(recipe));
  if (calibration != nullptr && !calibration->windows.empty())
    write_calibration_record(out, "calibration", *calibration, windows);
  if (recipe.format != OutputFormat::dequantized) {
    // The weights are packed in the model file: the record keeps the reports only.
    out.set_attribute(
        "/", "weights",
        std::string(recipe.format == OutputFormat::gguf ? kGgufFile : kSafetensorsFile));
    for (std::size_t i = 0; i < linears.size(); ++i)
      write_linear_report(out, linears.report(i), Timing::omit);
  } else {
    linears.for_each(
        [&](const QuantizedLinear& q) { write_quantized_linear(out, q, Timing::omit); });
  }
  for (const auto& block : extras.scales) write_block_scales(out, block);
  if (extras.activations) write_activation_scales(out, *extras.activations);
  out.commit();
}

constexpr std::string_view kStatsApproximation =
    "non-sequential approximation: each Linear's GPTQ Hessian is 2 x the weighted mix of the "
    "per-source mean "
    "X^T X of the FLOAT model's activations (ptq calibrate), not of inputs from already-quantized "
    "earlier "
    "blocks and Linears; the mix weights per-token averages, not window counts "
    "(docs/calibration.md)";

void stats_card(std::ostringstream& md, const StatsMixRecord& r) {
  md << "## Calibration data (cached statistics)\n\nFrom `" << r.file.filename().string() << "`, "
     << kStatsApproximation << ".\n\n| source | weight | tokens in the file |\n|---|---|---|\n";
  for (std::size_t s = 0; s < r.sources.size(); ++s)
    md << "| " << r.sources[s] << " | " << r.weights[s] << " | " << r.tokens[s] << " |\n";
  md << "\n";
}

// Mixture-of-experts layers: the calibration tokens each expert was routed and
// whose inputs formed its Hessian (its gate's report speaks for the expert).
void experts_card(std::ostream& md, const QuantizedLinears& linears) {
  bool first = true;
  for (std::size_t i = 0; i < linears.size(); ++i) {
    const LinearReport& r = linears.report(i);
    if (r.expert < 0 || r.role != LinearRole::gate || r.routed_tokens < 0) continue;
    if (first)
      md << "\n## Experts\n\nCalibration tokens routed to each expert, and whose inputs formed "
            "its Hessian\n(`all_tokens`: every token's, asked for or because it was routed fewer "
            "than\n`experts.min_tokens`).\n\n| layer | expert | routed tokens | Hessian "
            "|\n|---|---|---:|---|\n";
    first = false;
    md << "| " << r.layer << " | " << r.expert << " | " << r.routed_tokens << " | "
       << expert_hessian_name(r.expert_hessian) << " |\n";
  }
}

// An export's card is named after the first run's source model and says where
// it came from.
std::string model_card(const std::filesystem::path& source,
                       const std::optional<ExportedRun>& exported, const Recipe& recipe,
                       const CalibrationSet* calibration, const QuantizedLinears& linears,
                       const std::vector<std::string>& warnings,
                       const std::optional<StatsMixRecord>& from_stats, const FolderSizes& sizes,
                       WindowRecord windows) {
  std::ostringstream md;
  const std::string model_name = exported ? exported->source_model : source.filename().string();
  md << "# " << model_name << " — " << recipe_title(recipe) << "\n\n";
  if (exported)
    md << "Exported by `ptq export` from the run `" << source.filename().string()
       << "`, whose `quantized.h5` keeps the calibration record.\n\n";
  if (recipe.format == OutputFormat::gguf) {
    md << "Quantized by ptq from `" << model_name << "` into `" << kGgufFile << "`, llama.cpp's GGUF,\n";
    if (recipe.gguf_type == "auto")
      md << "each tensor's type (embeddings and head included) chosen under a budget: `"
         << kMixFile << "`\nlists them and what each tensor costs at each candidate type";
    else
      md << "with llama-quantize's per-tensor types for " << recipe.gguf_type
         << " (embeddings and head included)";
    md << "; `quantized.h5`\nrecords the recipe, the calibration data and the per-Linear errors.\n\n";
  } else if (recipe.format != OutputFormat::dequantized) {
    md << "Quantized by ptq from `" << model_name << "` into a "
       << output_format_info(recipe.format).description
       << ",\n`quantization_config` in `config.json`: every decoder block's Linears packed"
       << (recipe.linear_specs.empty()
               ? ""
               : " (a mix of grids, one config group each: `mix.json` says why each Linear has "
                 "its own)")
       << "; `quantized.h5`\nrecords the recipe, the calibration data and the per-Linear errors. "
          "Embeddings and the head are unchanged.\n\n";
  } else {
    md << "Quantized by ptq from `" << model_name << "`. The Linears of every decoder block\n"
       << "are stored dequantized in float16 (`model.safetensors`); their integer codes, scales, "
          "zeros\n"
       << "and `g_idx` are in `quantized.h5`. Embeddings and the head are unchanged; "
       << (recipe.folds_scales()
               ? "the norms hold the scales\nfolded in before rounding (float32; the scales "
                 "themselves under `awq/` in `quantized.h5`).\n\n"
               : "so are the norms.\n\n");
  }
  if (recipe.method == Method::W8A8)
    md << "W8A8: every Linear input is meant to be int8 at inference (`ptq_activation_quant` in\n"
       << "`config.json`; `ptq eval` simulates it).\n\n";
  char size_line[256];
  std::snprintf(size_line, sizeof size_line,
                "the decoder blocks' Linears take %.3f bits per weight in the model file, the "
                "folder %.3f bits per parameter of the source",
                sizes.linear_bits_per_weight, sizes.folder_bits_per_parameter);
  md << "## Size\n\nFormat `" << output_format_info(recipe.format).name << "`; " << size_line
     << " (" << sizes.total
     << " bytes before this card and run.json).\n\n| file | bytes |\n|---|---:|\n";
  for (const auto& [name, bytes] : sizes.files) md << "| `" << name << "` | " << bytes << " |\n";
  md << "\n## Recipe\n\n```yaml\n" << recipe_to_yaml(recipe) << "```\n\n";
  if (calibration != nullptr && !calibration->windows.empty()) {
    md << "## Calibration data\n\n| source | path | weight | windows | content hash "
          "|\n|---|---|---|---|---|\n";
    for (const auto& s : calibration->sources)
      md << "| " << s.spec.name << " | `" << s.spec.path.filename().string() << "` | "
         << s.spec.weight << " | " << s.windows << " | " << s.content_hash << " |\n";
    md << "\n"
       << (windows == WindowRecord::token_ids
               ? "`quantized.h5` holds the calibration windows' token ids and the sources' full "
                 "paths (`--record-calibration-windows`): sharing this folder shares that text.\n\n"
               : "`quantized.h5` records each calibration window's hash, source and offset, not "
                 "its tokens (`--record-calibration-windows` would store them).\n\n");
  }
  if (from_stats) stats_card(md, *from_stats);
  md << "## Per-layer errors\n\n| layer | linear | weight MSE | GPTQ loss | damping retries "
        "|\n|---|---|---|---|---|\n";
  char row[160];
  for (std::size_t i = 0; i < linears.size(); ++i) {
    const LinearReport& r = linears.report(i);
    const std::string linear = (r.expert < 0 ? "" : "expert " + std::to_string(r.expert) + " ") +
                               std::string(linear_role_name(r.role));
    std::snprintf(row, sizeof row, "| %d | %s | %.4e | %.4g | %d |\n", r.layer, linear.c_str(),
                  r.weight_mse, r.gptq_loss, r.damping_retries);
    md << row;
  }
  experts_card(md, linears);
  if (!warnings.empty()) {
    md << "\n## Warnings\n\n";
    for (const auto& w : warnings) md << "- " << w << "\n";
  }
  return md.str();
}

void write_run_log(const std::filesystem::path& path, const RunInfo& run,
                   const QuantizedLinears& linears, const nlohmann::ordered_json& size) {
  nlohmann::ordered_json j;
  j["size"] = size;
  j["seconds"] = run.seconds;
  j["threads"] = run.threads;
  j["device"] = run.device;
  j["peak_rss_bytes"] = peak_rss_bytes();  // after the weights were written: the whole run
  j["warnings"] = run.warnings;
  if (const auto& r = run.from_stats) {
    auto& c = j["calibration_stats"];
    c["file"] = r->file.string();
    c["approximation"] = kStatsApproximation;
    for (std::size_t s = 0; s < r->sources.size(); ++s)
      c["sources"].push_back(
          {{"name", r->sources[s]}, {"weight", r->weights[s]}, {"tokens", r->tokens[s]}});
  }
  for (std::size_t i = 0; i < linears.size(); ++i) {
    const LinearReport& r = linears.report(i);
    nlohmann::ordered_json l = {{"layer", r.layer}, {"linear", linear_role_name(r.role)}};
    if (r.expert >= 0) {
      l["expert"] = r.expert;
      l["routed_tokens"] = r.routed_tokens;
      l["expert_hessian"] = expert_hessian_name(r.expert_hessian);
    }
    l["seconds"] = r.seconds;
    j["linears"].push_back(std::move(l));
  }
  write_text_atomic(path, j.dump(2) + "\n");
}

}  // namespace

std::vector<std::string> write_quantized_model(
    const std::filesystem::path& source_model, const std::filesystem::path& out_dir,
    const Recipe& recipe, const CalibrationSet* calibration, const QuantizedLinears& linears,
    const RunInfo& run, const OutputOptions& options, const ModelExtras& extras) {
  OutputFolder folder(out_dir, "--out");
  const std::filesystem::path& staging = folder.staging();
  std::vector<std::string> warnings;
  std::optional<Checkpoint> opened;
  const Checkpoint& source = options.exported ? *options.exported->tensors
                                              : opened.emplace(Checkpoint::open(source_model));
  if (recipe.format == OutputFormat::gguf) {
    write_gguf_file(source_model, source, staging / kGgufFile, recipe, linears, extras.tensors,
                    options.exported.has_value());
  } else {
    for (auto name : kCopiedFiles)
      if (std::filesystem::exists(source_model / name))
        std::filesystem::copy_file(source_model / name, staging / name);
    drop_format_keys(staging / "config.json");
    const ModelConfig config = load_model_config(source_model);
    const PackedLayout layout =
        packed_layout(config, linears, recipe.format, source, extras.activations);
    write_weights(staging, source, config, linears, extras, recipe.format, layout,
                  options.max_shard_bytes, warnings);
    if (recipe.format != OutputFormat::dequantized) write_packed_config(staging, recipe, layout);
  }
  if (!extras.mix.empty()) write_text_atomic(staging / kMixFile, extras.mix);
  // The recipe as outputs record it: the sources' paths may name private data.
  const Recipe recorded = recorded_recipe(recipe, options.calibration_windows);
  write_manifest(staging / "quantized.h5", source_model, recorded, calibration, linears, extras,
                 options.exported, options.calibration_windows, run.source_model_hash);
  // compressed-tensors states W8A8's activations in its own quantization_config.
  if (extras.activations && recipe.format == OutputFormat::dequantized)
    write_activation_config(staging / "config.json", *extras.activations);
  std::int64_t parameters = 0;
  for (const TensorView* t : source.tensors()) parameters += t->numel();
  const FolderSizes sizes = folder_sizes(staging, recipe.format, parameters);
  write_text_atomic(staging / "README.md",
                    model_card(source_model, options.exported, recorded, calibration, linears,
                               warnings, run.from_stats, sizes, options.calibration_windows));
  RunInfo logged = run;
  logged.warnings.insert(logged.warnings.end(), warnings.begin(), warnings.end());
  write_run_log(staging / "run.json", logged, linears, folder_sizes_json(sizes, recipe.format));

  folder.commit();
  return warnings;
}

}  // namespace ptq
