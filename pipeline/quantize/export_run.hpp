#pragma once
// `ptq export`: an earlier run re-emitted in another format from what its
// folder holds (the packed Linears' grids, or quantized.h5's codes for a
// dequantized run), with no forward pass. The target format's own checks
// refuse grids it cannot hold (e.g. float32 scales into float16-scale formats,
// NF4 into an integer format, a grid ggml's blocks cannot hold exactly into
// GGUF), naming the tensor or recipe key. GGUF runs are not read back yet.
#include <filesystem>

#include "pipeline/formats/output_formats.hpp"
#include "pipeline/output/quantized_output.hpp"

namespace ptq {

struct ExportJob {
  std::filesystem::path run, out;
  OutputFormat format = OutputFormat::gptq;
  std::string gguf_type;  // format gguf: llama-quantize's type (the Linears must land exactly)
  OutputOptions output;
};

// InputError naming the run's file, or the format and what it cannot hold.
void export_run(const ExportJob& job);

}  // namespace ptq
