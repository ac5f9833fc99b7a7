#pragma once
// Tiny's config, tokenizer and trained weights in the layout of another family
// (the llama.cpp agreement and imatrix tests): "qwen2" adds q/k/v biases,
// "qwen3" per-head q/k norm weights, "llama3rope" llama3 rope scaling whose
// smoothed band covers the frequencies a 128-token window sees, "phi3" the
// fused layout (the same model: Phi-3's forward is Llama's on those rows),
// "phi3longrope" with LongRoPE stretched from 64 to 256 tokens, "gemma2" and
// "gemma3" Gemma's norms and layers around tiny's Linears, "mixtral" (8
// experts, transformers v4's per-expert modules) and "qwen3moe" (4 experts
// stacked as transformers v5 holds them, q/k norms) each MLP as experts near
// tiny's own under a random router; "mixtral1" is tiny as a mixture of one
// expert (tiny's MLP itself, top 1: the same model). The folder's name,
// the files' general.name, is "model": llama.cpp treats a model named phi3 as
// Phi-3's own vocabulary, which tiny's is not.
#include <filesystem>
#include <string>

namespace ptq::test {

std::filesystem::path tiny_as(const std::string& arch);

}  // namespace ptq::test
