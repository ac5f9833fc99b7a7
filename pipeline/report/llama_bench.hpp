#pragma once
// Prompt and generation speed of a GGUF file from llama.cpp's own llama-bench
// (-p 512 -n 128, JSON output), run as a child process.
#include <filesystem>
#include <optional>

namespace ptq {

struct LlamaBenchResult {
  double prompt_tps = 0;      // tokens/s processing a 512-token prompt
  double generation_tps = 0;  // tokens/s generating 128 tokens
};

// InputError naming the binary when it cannot run or its output has no speeds.
LlamaBenchResult run_llama_bench(const std::filesystem::path& llama_bench,
                                 const std::filesystem::path& gguf, int threads);

}  // namespace ptq
