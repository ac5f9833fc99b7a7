#include "pipeline/recipe/text_tokenizer.hpp"

#include <cstdio>

namespace ptq {

Tokenizer load_text_tokenizer(const std::filesystem::path& model_dir) {
  Tokenizer tokenizer = Tokenizer::load(model_dir);
  if (!tokenizer.pipeline_note().empty())
    std::fprintf(stderr, "note: %s\n", tokenizer.pipeline_note().c_str());
  return tokenizer;
}

}  // namespace ptq
