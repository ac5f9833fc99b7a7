#pragma once
// What an output folder weighs, as run.json and the model card state it: its
// files' sizes and the bits each quantized Linear weight takes in the model
// file (codes, scales, zeros and g_idx together), read back from the written
// file itself (safetensors or GGUF), not from what the writer meant to write.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "pipeline/recipe/recipe.hpp"

namespace ptq {

struct FolderSizes {
  std::map<std::string, std::uintmax_t> files;  // every regular file of the folder
  std::uintmax_t total = 0;
  double linear_bits_per_weight = 0;     // of the decoder blocks' Linears
  double folder_bits_per_parameter = 0;  // all files over the source's parameters, when known
};

// `parameters`: the source checkpoint's parameter count, or nullopt (then
// folder_bits_per_parameter stays 0 and the JSON omits it).
FolderSizes folder_sizes(const std::filesystem::path& dir, OutputFormat format,
                         std::optional<std::int64_t> parameters);
nlohmann::ordered_json folder_sizes_json(const FolderSizes& sizes, OutputFormat format);
// The packed format a folder's config.json names (gptq, awq, compressed-tensors, bnb-nf4), if any.
std::optional<OutputFormat> packed_format_of(const std::filesystem::path& dir);

}  // namespace ptq
