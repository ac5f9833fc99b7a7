#pragma once
// llama-perplexity's KL-divergence base (`llama-perplexity -m M.gguf -f TEXT
// -c N_CTX --kl-divergence-base FILE`, without --kl-divergence: llama.cpp
// tools/perplexity/perplexity.cpp, perplexity() and process_logits()), and
// ptq's model scored against it on exactly llama.cpp's tokens and chunks.
//
// File layout (little-endian, as llama.cpp writes it on x86):
//   char[8] "_logits_"; int32 n_ctx; int32 n_vocab; int32 n_chunk
//   int32 tokens[n_chunk * n_ctx]: the text as llama.cpp tokenized it (with
//     a BOS first when the vocab adds one), cut into chunks of n_ctx tokens
//   per chunk, per position j = n_ctx/2 .. n_ctx-2 (the second half of the
//   chunk, each predicting token j+1): a row of nv = 2*((n_vocab+1)/2) + 4 uint16:
//     float32 scale (uint16 0-1), float32 min_log_prob (uint16 2-3), then
//     uint16 q[v] for v < n_vocab (padded to even): log p(v) = scale*q[v] +
//     min_log_prob. llama.cpp maps the logits in [max-16, max] onto 0..65535;
//     lower logits get q = 0, i.e. log p = min_log_prob.
// llama.cpp runs each chunk from an empty context; when its vocab adds a BOS,
// the chunk's first token is replaced by BOS for the forward pass (the file
// keeps the text's token).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

#include "algorithms/matrix.hpp"
#include "calibrate/model.hpp"
#include "pipeline/eval/eval.hpp"

namespace ptq {

class LlamacppBase {
 public:
  // Reads the header and the tokens and checks the file size against them.
  // InputError naming the file: no such file, another magic, sizes outside
  // 3 <= n_ctx <= 2^20, 1 <= n_vocab <= 2^24, 1 <= n_chunk <= 2^20, a size
  // other than the header implies (truncated or trailing bytes), a token
  // outside [0, n_vocab).
  static LlamacppBase open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  int n_ctx() const { return n_ctx_; }
  int n_vocab() const { return n_vocab_; }
  int n_chunk() const { return n_chunk_; }
  std::span<const std::int32_t> tokens() const { return tokens_; }  // [n_chunk * n_ctx]
  int first_scored() const { return n_ctx_ / 2; }  // position of a chunk's first row
  int scored_positions() const { return n_ctx_ - 1 - n_ctx_ / 2; }  // rows per chunk

  // llama.cpp's log-probabilities of chunk `chunk`: [scored_positions, n_vocab],
  // row r for position first_scored() + r. InputError naming the file, chunk
  // and row for a non-finite or negative scale or a non-finite minimum.
  MatrixRM read_log_probs(int chunk);

 private:
  LlamacppBase() = default;
  std::filesystem::path path_;
  int n_ctx_ = 0, n_vocab_ = 0, n_chunk_ = 0;
  std::vector<std::int32_t> tokens_;
  std::ifstream in_;
  std::uint64_t rows_offset_ = 0;  // where chunk 0's rows start
};

struct LlamacppEvalConfig {
  int max_chunks = 0;  // score only the first N chunks; 0 = all
  int batch_chunks = 8;
  std::size_t resident_budget_bytes = kResidentBlocksBudget;
  const LinearInputTransform* input_transform = nullptr;     // as EvalConfig
};

struct LlamacppEvalResult {
  int chunks = 0;
  std::int64_t positions = 0;  // scored: chunks * scored_positions()
  // Mean over the scored positions of llama.cpp's KL: sum over v with
  // log p_base(v) > -16 of p_base(v) (log p_base(v) - log q(v)), p_base
  // decoded from the file, q = softmax of ptq's logits.
  double kl = 0.0;
  double top1 = 0.0;  // fraction of positions where both argmaxes (first on ties) agree
  double ppl = 0.0, base_ppl = 0.0;  // of ptq and of the base, on the scored tokens
  bool bos_replaced = false;         // tokens[0] is the model's BOS: llama.cpp's vocab adds one
};

// Runs `model` on the base's chunks (with llama.cpp's BOS replacement when
// tokens()[0] is the model's BOS id) and compares with the base's rows.
// InputError when the model's vocab size is not the base's n_vocab.
LlamacppEvalResult evaluate_against_llamacpp(const Model& model, LlamacppBase& base,
                                             const LlamacppEvalConfig& config,
                                             const EvalProgress& progress = {});

// {"file", "n_ctx", "chunks", "positions", "bos", "kl", "top1", "ppl", "base_ppl"}
nlohmann::json llamacpp_eval_json(const LlamacppEvalResult& result, const LlamacppBase& base);

// Whether `ids` (ptq's tokenization of the same text, no BOS) are llama.cpp's
// tokens: equal to tokens() after a BOS when bos_replaced, as far as tokens()
// goes. The index of the first difference, or nullopt when they match.
std::optional<std::size_t> first_token_difference(const LlamacppBase& base,
                                                  std::span<const std::int32_t> ids,
                                                  std::optional<std::int32_t> bos);

}  // namespace ptq
