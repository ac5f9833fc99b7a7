#pragma once
// `ptq calibrate`'s statistics as llama.cpp's importance matrix (io/imatrix.hpp),
// for `llama-quantize --imatrix`: one entry per Linear of every block, under
// llama.cpp's name (blk.N.attn_q.weight ... blk.N.ffn_down.weight). q/k/v read
// the same attention input and gate/up the same MLP input, so they get the
// same statistics, as llama-imatrix gives them. A mixture layer's experts get
// one entry per stacked tensor (blk.N.ffn_gate_exps.weight, ...): one matrix
// per expert, over the tokens routed to it, as llama-imatrix counts them.
//
// For a mix of sources with weights w_s (normalised to sum to 1, as mix_stats
// does), per Linear input and input column j:
//   mean_j     = sum_s w_s * sum_sq_s[j] / tokens_s   (mix_stats' mean_square)
//   count      = sum of tokens_s over the sources with w_s > 0
//   in_sum2[j] = mean_j * count, in float32
// so that llama-quantize's importance in_sum2 / count is the mixed per-token
// mean of x^2, and count is the number of tokens behind it (what llama-imatrix
// adds when it merges files). A single source gives its own sums and tokens.
// imatrix.datasets lists the mixed sources as "NAME=WEIGHT"; chunk_size is the
// calibration window length and chunk_count = count / chunk_size.
#include <span>

#include "io/imatrix.hpp"
#include "pipeline/quantize/calib_stats.hpp"

namespace ptq {

// `weights`: per source, in the file's source order (resolve_mix).
Imatrix calibration_imatrix(const CalibrationStats& stats, std::span<const double> weights);

}  // namespace ptq
