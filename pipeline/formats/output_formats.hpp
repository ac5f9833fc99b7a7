#pragma once
// The output formats of `ptq quantize --format`, and the grids each accepts:
// one table, so a recipe whose method rounds onto a grid the format cannot
// store is refused before any forward pass (Recipe::validate names both).
#include <span>
#include <string>
#include <string_view>

namespace ptq {

enum class OutputFormat { dequantized, gguf, gptq, awq, compressed_tensors, bnb_nf4 };

// What a method leaves in the weights.
enum class WeightGrid {
  uniform,    // integer codes, scales, zeros (RTN, GPTQ, AWQ, int8)
  nf4,        // the NF4 table
  ggml,       // ggml's block grids (llama.cpp's types)
  float_copy  // no rounding: a float conversion
};

struct OutputFormatInfo {
  OutputFormat format;
  std::string_view name;          // "dequantized", "gguf", "gptq", "awq", "compressed-tensors", "bnb-nf4"
  std::string_view description;   // for --help and model cards
  std::string_view quant_method;  // config.json's quantization_config.quant_method; "" if none
  std::span<const WeightGrid> grids;
};

std::span<const OutputFormatInfo> output_formats();
const OutputFormatInfo& output_format_info(OutputFormat format);
// A format's name; InputError naming `where` and the formats otherwise.
OutputFormat parse_output_format(const std::string& text, const std::string& where);
bool accepts(OutputFormat format, WeightGrid grid);
// gptq, awq, compressed-tensors and bnb-nf4: Hugging Face folders of packed
// Linears, named by their quantization_config's quant_method.
bool packed_hf_format(OutputFormat format);
std::string_view weight_grid_name(WeightGrid grid);

}  // namespace ptq
