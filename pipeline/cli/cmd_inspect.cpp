// `ptq inspect PATH [--json]`: what a checkpoint or GGUF file holds
// (architecture, key config values, metadata, tensors, types, parameter
// count, bytes, bits per weight), for people or scripts.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "io/gguf.hpp"
#include "io/hash.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/output/folder_sizes.hpp"

namespace ptq::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

enum class InspectFormat { Text, Json };

struct InspectOptions {
  fs::path path;
  InspectFormat format = InspectFormat::Text;
  bool digests = false;  // hash every tensor's bytes: reads the whole file
};

// A tensor's bytes as a short hex digest, so two files can be compared tensor
// by tensor even where their metadata (paths, names) differs.
std::string digest_of(std::span<const std::byte> bytes) {
  Fnv1a64 hash;
  hash.update(bytes);
  return hash.hex();
}

// config.json sits in the checkpoint folder, or beside a single weights file.
std::optional<ModelConfig> find_config(const fs::path& path) {
  const fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  if (!fs::is_regular_file(dir / "config.json")) return std::nullopt;
  return load_model_config(dir);
}

json config_json(const ModelConfig& c) {
  json out = {{"model_type", c.model_type},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_hidden_layers", c.num_layers},
              {"num_attention_heads", c.num_heads},
              {"num_key_value_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"vocab_size", c.vocab_size},
              {"max_position_embeddings", c.max_position_embeddings},
              {"rms_norm_eps", c.rms_norm_eps},
              {"rope_theta", c.rope.theta},
              {"rope_type", rope_type_name(c.rope.type)},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"attention_bias", c.attention_bias},
              {"mlp_bias", c.mlp_bias},
              {"qk_norm", c.qk_norm}};
  if (c.has_moe()) {
    int layers = 0;
    for (char m : c.moe.layers) layers += m;
    out["experts"] = c.moe.experts;
    out["experts_per_token"] = c.moe.experts_per_token;
    out["expert_intermediate_size"] = c.moe.intermediate_size;
    out["normalize_top_k"] = c.moe.normalize_top_k;
    out["mixture_layers"] = layers;
  }
  return out;
}

json describe(const Checkpoint& ckpt, const std::optional<ModelConfig>& config, bool digests) {
  json tensors = json::array();
  std::int64_t parameters = 0;
  for (const TensorView* t : ckpt.tensors()) {
    tensors.push_back({{"name", t->name},
                       {"dtype", dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"bytes", t->bytes.size()}});
    if (digests) tensors.back()["fnv1a64"] = digest_of(t->bytes);
    parameters += t->numel();
  }
  json out;
  out["architecture"] = config ? json(architecture_name(config->arch)) : json(nullptr);
  out["config"] = config ? config_json(*config) : json(nullptr);
  out["tensors"] = std::move(tensors);
  out["parameters"] = parameters;
  out["bytes"] = ckpt.total_bytes();
  return out;
}

// A metadata value for people: long arrays (vocabularies, merges) as their
// length and first items.
json metadata_value(const gguf::Value& v) {
  constexpr std::size_t kShown = 8;
  if (const auto* a = std::get_if<gguf::Array>(&v.data)) {
    json items = json::array();
    for (std::size_t i = 0; i < std::min(kShown, a->items.size()); ++i)
      items.push_back(metadata_value(a->items[i]));
    if (a->items.size() <= kShown) return items;
    return {{"length", a->items.size()}, {"first", std::move(items)}};
  }
  return std::visit(
      [](const auto& x) -> json {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, gguf::Array>)
          return nullptr;
        else
          return x;
      },
      v.data);
}

// A GGUF file: its metadata, and per tensor its GGUF name, type, shape (ggml
// order), bytes and bits per weight; the model's config as ptq reads it.
json describe_gguf(const gguf::File& file, bool digests) {
  json metadata = json::object();
  for (const auto& [key, value] : file.metadata()) metadata[key] = metadata_value(value);
  json tensors = json::array();
  std::int64_t parameters = 0;
  std::uint64_t bytes = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    const gguf::TensorTypeInfo* type = gguf::find_tensor_type(t.type);
    tensors.push_back(
        {{"name", t.name},
         {"dtype", type != nullptr ? std::string(type->name) : std::to_string(t.type)},
         {"shape", t.ne},
         {"bytes", t.data.size()},
         {"bits_per_weight", 8.0 * double(t.data.size()) / double(t.numel())}});
    if (digests) tensors.back()["fnv1a64"] = digest_of(t.data);
    parameters += t.numel();
    bytes += t.data.size();
  }
  const ModelConfig config = gguf_model_config(file);
  json out;
  out["architecture"] = architecture_name(config.arch);
  out["config"] = config_json(config);
  out["metadata"] = std::move(metadata);
  out["tensors"] = std::move(tensors);
  out["parameters"] = parameters;
  out["bytes"] = bytes;
  out["bits_per_weight"] = 8.0 * double(bytes) / double(parameters);
  return out;
}

void print_text(const json& d) {
  std::printf("architecture: %s\n", d["architecture"].is_null()
                                        ? "unknown (no config.json)"
                                        : d["architecture"].get<std::string>().c_str());
  if (!d["config"].is_null()) {
    for (const auto& [key, value] : d["config"].items())
      std::printf("  %-24s %s\n", key.c_str(), value.dump().c_str());
  }
  if (d.contains("metadata")) {
    std::printf("metadata: %zu keys\n", d["metadata"].size());
    for (const auto& [key, value] : d["metadata"].items())
      std::printf("  %-40s %s\n", key.c_str(), value.dump().c_str());
  }
  std::printf("tensors: %zu\n", d["tensors"].size());
  for (const auto& t : d["tensors"]) {
    std::printf("  %-48s %-6s %s", t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(), t["shape"].dump().c_str());
    if (t.contains("bits_per_weight"))
      std::printf("  %.2f bits/weight", t["bits_per_weight"].get<double>());
    std::printf("\n");
  }
  if (d.contains("quantization"))
    std::printf(
        "quantization: %s, %.3f bits per Linear weight, folder %llu bytes\n",
        d["quantization"]["format"].get<std::string>().c_str(),
        d["quantization"]["linear_bits_per_weight"].get<double>(),
        static_cast<unsigned long long>(d["quantization"]["folder_bytes"].get<std::uint64_t>()));
  if (d.contains("bits_per_weight"))
    std::printf("bits per weight: %.3f\n", d["bits_per_weight"].get<double>());
  std::printf("parameters: %lld\nbytes: %llu\n",
              static_cast<long long>(d["parameters"].get<std::int64_t>()),
              static_cast<unsigned long long>(d["bytes"].get<std::uint64_t>()));
}

void run_inspect(const InspectOptions& options) {
  json description;
  if (const auto gguf_path = gguf_model_file(options.path)) {
    description = describe_gguf(*gguf::File::open(*gguf_path), options.digests);
  } else {
    description = describe(Checkpoint::open(options.path), find_config(options.path), options.digests);
    if (fs::is_directory(options.path))
      if (const auto format = packed_format_of(options.path))
        description["quantization"] =
            folder_sizes_json(folder_sizes(options.path, *format, std::nullopt), *format);
  }
  if (options.format == InspectFormat::Json) {
    std::cout << description.dump(2) << '\n';
  } else {
    print_text(description);
  }
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  auto* cmd =
      app.add_subcommand("inspect", "Show a checkpoint's architecture, config, tensors and sizes");
  cmd->add_option("path", options->path,
                  "Checkpoint folder (packed GPTQ/AWQ/compressed-tensors/bitsandbytes too), .safetensors file, "
                  ".index.json, .gguf file or GGUF output folder")
      ->required();
  cmd->add_flag_callback(
      "--json", [options] { options->format = InspectFormat::Json; },
      "Print one JSON object instead of text");
  cmd->add_flag("--digests", options->digests,
                "With --json: an FNV-1a 64 digest of each tensor's bytes (reads every byte)");
  cmd->callback([options] { run_inspect(*options); });
}

}  // namespace ptq::cli
