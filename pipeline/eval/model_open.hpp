#pragma once
// The model behind a path given to `ptq eval`: a Hugging Face folder, a GGUF
// file, or a `ptq quantize --format gguf` output folder (model.gguf and no
// config.json). A GGUF model's tensors are decoded with ptq's own decoders
// (pipeline/formats/gguf_model.hpp: every block type dequantized as ggml does,
// q/k rows back in Hugging Face order) and held in memory as float32.
#include <filesystem>
#include <optional>

#include "calibrate/model.hpp"

namespace ptq {

// The GGUF file `path` stands for, if it is one (a .gguf file, or a folder
// holding model.gguf and no config.json).
std::optional<std::filesystem::path> gguf_model_file(const std::filesystem::path& path);

Model open_model(const std::filesystem::path& path);

}  // namespace ptq
