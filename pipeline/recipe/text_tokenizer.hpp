#pragma once
// The tokenizer a command reads text with.
#include <filesystem>

#include "io/tokenizer.hpp"

namespace ptq {

// Loads the tokenizer of a model folder and, when ptq builds its pipeline
// another way than tokenizer.json states it (Tokenizer::pipeline_note), says
// so on stderr as a "note:" line: every command that tokenizes text does.
Tokenizer load_text_tokenizer(const std::filesystem::path& model_dir);

}  // namespace ptq
