#pragma once
// llama.cpp's importance matrix as llama-imatrix writes it (GGUF): per weight
// tensor `<name>.in_sum2` (F32, [n_columns] or [n_columns, n_matrices]) and
// `<name>.counts` (F32, [1] or [1, n_matrices]), plus the keys general.type =
// "imatrix", imatrix.datasets (string array), imatrix.chunk_count and
// imatrix.chunk_size (u32). Tensor names are llama.cpp's ("blk.0.attn_q.weight").
//
// llama-imatrix has an entry for every weight it sees multiply activations
// (attn_q/k/v/output, ffn_gate/up/down, the experts of MoE tensors), none for
// token_embd (a row lookup), norms, or output.weight (unless --process-output).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ptq {

// The input statistics of one weight, per matrix: the experts of a MoE tensor,
// or one matrix otherwise.
struct ImatrixEntry {
  // [n_matrices][n_columns], row-major: sum over the tokens that reached matrix
  // m of x_i^2, x being the weight's input (ggml's ne[0], Hugging Face's `in`).
  std::vector<float> in_sum2;
  std::vector<float> counts;  // [n_matrices]: how many tokens reached each matrix

  std::size_t n_matrices() const { return counts.size(); }
  std::size_t n_columns() const { return counts.empty() ? 0 : in_sum2.size() / counts.size(); }
};

struct Imatrix {
  std::map<std::string, ImatrixEntry, std::less<>> entries;  // by llama.cpp weight name
  std::vector<std::string> datasets;  // imatrix.datasets: calibration sources
  std::uint32_t chunk_count = 0;      // imatrix.chunk_count: windows seen
  std::uint32_t chunk_size = 0;       // imatrix.chunk_size: tokens per window

  // The importance llama-quantize hands its quantizers for `tensor`
  // ([n_matrices * n_columns], matrix m at m * n_columns): in_sum2 / count per
  // matrix, count being counts[m] rounded to an integer; all 1 for a matrix that
  // no token reached. nullopt when the tensor has no entry (llama-quantize then
  // quantizes it without importance).
  std::optional<std::vector<float>> importance(std::string_view tensor) const;
};

// Reads a GGUF imatrix. InputError naming the file and the tensor or key for
// anything llama-quantize would refuse or misread: no entries, missing metadata,
// an in_sum2 without its counts (or the reverse), non-F32 data, an in_sum2 size
// not a multiple of the counts', negative or non-finite values. Other tensors
// (newer llama-imatrix statistics) are ignored, as llama-quantize ignores them.
Imatrix read_imatrix(const std::filesystem::path& path);

// Writes `imatrix` as llama-imatrix does (keys in the order above, entries in
// name order, each in_sum2 then counts; 1-D when there is one matrix), so that
// llama-quantize --imatrix accepts it and writing back what read_imatrix read
// reproduces the file byte for byte. InputError naming `path` and the tensor for
// an empty imatrix or an entry whose sizes do not fit together.
void write_imatrix(const std::filesystem::path& path, const Imatrix& imatrix);

}  // namespace ptq
