#pragma once
// The record a mix of grids leaves in its output folder (mix.json, written by
// pipeline/quantize/sensitivity.hpp), read back to replay the choice
// (--mix-types) or to solve its measured costs again (--mix-costs):
//   {"format": "ptq-mix", "version": 1, "output": "gguf" | "compressed-tensors",
//    "budget": ..., "predictor": ..., "candidates": [...],
//    "tensors": [{"name": N, "type": T, "bytes": B,
//                 "candidates": {T: {"bytes", "output_error", "kl", "predicted"}}}]}
// N is a GGUF tensor name or a Hugging Face module name; T a GGUF type name
// or a compressed-tensors scheme name (w4-g128, ...).
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace ptq {

inline constexpr std::string_view kMixFormat = "ptq-mix";
inline constexpr int kMixVersion = 1;

using MixTypes = std::map<std::string, std::string, std::less<>>;  // tensor -> candidate name

// The whole record, checked to be a mix for `output`: InputError naming the
// file for another format, version or output.
nlohmann::ordered_json read_mix_record(const std::filesystem::path& path, std::string_view output);

// Each tensor's chosen candidate; InputError naming the file and entry for a
// missing name or type, or a tensor named twice.
MixTypes read_mix_types(const std::filesystem::path& path, std::string_view output);

// A record of `types` alone, as a replay writes it.
std::string mix_types_json(const MixTypes& types, std::string_view output);

}  // namespace ptq
