#include "pipeline/formats/output_formats.hpp"

#include <algorithm>
#include <array>

#include "io/error.hpp"

namespace ptq {

namespace {

constexpr std::array<WeightGrid, 2> kDequantizedGrids = {WeightGrid::uniform, WeightGrid::nf4};
constexpr std::array<WeightGrid, 2> kGgufGrids = {WeightGrid::ggml, WeightGrid::float_copy};
constexpr std::array<WeightGrid, 1> kPackedGrids = {WeightGrid::uniform};
constexpr std::array<WeightGrid, 1> kNf4Grids = {WeightGrid::nf4};

constexpr std::array<OutputFormatInfo, 6> kFormats = {{
    {OutputFormat::dequantized, "dequantized",
     "Hugging Face folder of float16 dequantized weights, the codes in quantized.h5", "",
     kDequantizedGrids},
    {OutputFormat::gguf, "gguf", "llama.cpp's GGUF file (DIR/model.gguf), packed ggml blocks", "",
     kGgufGrids},
    {OutputFormat::gptq, "gptq",
     "GPTQ checkpoint (AutoGPTQ/GPTQModel layout): packed int32 qweight/qzeros, float16 scales, "
     "g_idx",
     "gptq", kPackedGrids},
    {OutputFormat::awq, "awq",
     "AWQ checkpoint (AutoAWQ GEMM layout): interleaved int32 qweight/qzeros, float16 scales",
     "awq", kPackedGrids},
    {OutputFormat::compressed_tensors, "compressed-tensors",
     "compressed-tensors checkpoint (pack-quantized, as transformers and vLLM load it)",
     "compressed-tensors", kPackedGrids},
    {OutputFormat::bnb_nf4, "bnb-nf4",
     "bitsandbytes 4-bit checkpoint (NF4 codes two to a byte, double-quantized absmax, as "
     "transformers loads it)",
     "bitsandbytes", kNf4Grids},
}};

}  // namespace

std::span<const OutputFormatInfo> output_formats() { return kFormats; }

const OutputFormatInfo& output_format_info(OutputFormat format) {
  const auto& info = kFormats[static_cast<std::size_t>(format)];
  PTQ_ASSERT(info.format == format);
  return info;
}

OutputFormat parse_output_format(const std::string& text, const std::string& where) {
  std::string names;
  for (const auto& f : kFormats) {
    if (f.name == text) return f.format;
    names += (names.empty() ? "" : " | ") + std::string(f.name);
  }
  throw input_error(where, names, "\"" + text + "\"");
}

bool accepts(OutputFormat format, WeightGrid grid) {
  const auto grids = output_format_info(format).grids;
  return std::find(grids.begin(), grids.end(), grid) != grids.end();
}

bool packed_hf_format(OutputFormat format) {
  return !output_format_info(format).quant_method.empty();
}

std::string_view weight_grid_name(WeightGrid grid) {
  constexpr std::array<std::string_view, 4> names = {
      "a uniform integer grid", "the NF4 table", "ggml's block grids", "no grid (a float copy)"};
  return names[static_cast<std::size_t>(grid)];
}

}  // namespace ptq
