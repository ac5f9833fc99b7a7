#include "pipeline/formats/packed_folder.hpp"

#include <memory>
#include <nlohmann/json.hpp>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/text_file.hpp"
#include "pipeline/formats/awq_pack.hpp"
#include "pipeline/formats/bnb_pack.hpp"
#include "pipeline/formats/ct_pack.hpp"
#include "pipeline/formats/gptq_pack.hpp"

namespace ptq {

namespace {

// The folder of the format whose quantization_config `config` (read from
// `where`) holds, or nullopt.
std::optional<PackedFolder> packed_folder_of(const nlohmann::json& config, const std::string& where,
                                             const std::filesystem::path& dir) {
  const auto name = [dir](const std::string& base) { return dir.string() + ": " + base; };
  // Opened once a format matched; every Linear's grid and the dequantized view read it.
  const auto open = [&] { return std::make_shared<const Checkpoint>(Checkpoint::open(dir)); };
  std::optional<PackedFolder> f;
  if (const auto grid = read_gptq_quantization_config(config, where)) {
    const auto packed = open();
    f = PackedFolder{OutputFormat::gptq,
                     [=](const std::string& base) -> QuantizedWeight {
                       return read_gptq_linear(*packed, base, *grid, name(base));
                     },
                     [=] { return dequantized_gptq_checkpoint(dir, *packed, *grid); }};
  } else if (const auto spec = read_awq_quantization_config(config, where)) {
    const auto packed = open();
    f = PackedFolder{OutputFormat::awq,
                     [=](const std::string& base) -> QuantizedWeight {
                       return read_awq_linear(*packed, base, *spec, name(base));
                     },
                     [=] { return dequantized_awq_checkpoint(dir, *packed, *spec); }};
  } else if (const auto ct = read_compressed_tensors_config(config, where)) {
    const auto packed = open();
    f = PackedFolder{OutputFormat::compressed_tensors,
                     [=](const std::string& base) -> QuantizedWeight {
                       const CompressedTensorsScheme* scheme = ct->scheme_for(base);
                       if (scheme == nullptr)
                         throw input_error(name(base), "a Linear some config group targets",
                                           "one no group names, or an ignored one");
                       return read_compressed_linear(*packed, base, *scheme, name(base));
                     },
                     [=] { return dequantized_compressed_checkpoint(dir, *packed, *ct); }};
  } else if (read_bnb_quantization_config(config, where)) {
    const auto packed = open();
    f = PackedFolder{OutputFormat::bnb_nf4,
                     [=](const std::string& base) -> QuantizedWeight {
                       return unpack_bnb_nf4(read_bnb_linear(*packed, base, name(base)),
                                             name(base));
                     },
                     [=] { return dequantized_bnb_checkpoint(dir, *packed); }};
  }
  return f;
}

}  // namespace

std::optional<PackedFolder> open_packed_folder(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  if (!std::filesystem::is_regular_file(config_path)) return std::nullopt;
  nlohmann::json config;
  try {
    // Strict, as Model::open reads it: no copy below recurses through deep nesting.
    config = parse_json_strict_sorted(read_text_file(config_path), config_path.string());
  } catch (const InputError&) {
    return std::nullopt;  // Model::open names the error
  }
  try {
    return packed_folder_of(config, config_path.string(), dir);
  } catch (const nlohmann::json::exception& e) {
    // The config readers' typed accessors (value(), get()) on a key of another type.
    throw input_error(config_path.string() + ": quantization_config",
                      "keys of the types its format documents", e.what());
  }
}

}  // namespace ptq
