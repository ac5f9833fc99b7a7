#pragma once
// A mix of grids chosen under a budget (Recipe::mix): what rounding each
// tensor onto each candidate grid costs the model, and the choice that
// minimises the predicted cost within the budget. The formats' drivers
// (gguf_mix.hpp, linear_mix.hpp) say which tensors and candidates there are,
// what each takes in bytes and how each is rounded.
//
// 1. Output error, on the float model over the calibration windows, block by
//    block: each Linear rounded at every candidate as the final run rounds it,
//    e = tr(dW H dW^T) with H = 2/n X^T X of its float input (twice the mean
//    squared output error per token), summed over the Linears one tensor holds
//    (an expert's H over the tokens routed to it, or over every token by the
//    rule of expert_takes_every_token). An embedding's error is that of its
//    uses: the looked-up rows (twice their mean squared error) and, as a head
//    (tied, or output.weight), its output error under the final hidden states.
// 2. The KL the tensor alone causes: the model with only that tensor rounded,
//    against the float model, on the first Recipe::mix.windows windows (the
//    float stream is kept at each block's input, so only the blocks from the
//    tensor's own on run again).
// 3. Predictors (MixPredictor): output_error, e itself; kl_scaled, e times the
//    KL per unit of e measured at one reference candidate (the one of most bits
//    within the budget's average); kl, the KL measured at every candidate.
// 4. The choice: the summed prediction minimised under the budget, exactly
//    (algorithms/budget.hpp).
// The record (mix.json, pipeline/formats/mix_file.hpp) keeps every measured
// cost: another budget or predictor is solved from it without measuring.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "calibrate/model.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

// How a tensor enters the model.
enum class TensorUse { linear, embedding, head, tied_embedding };

// One tensor and what it costs at each candidate.
struct TensorCosts {
  std::string name;  // as the output names it
  TensorUse use = TensorUse::linear;
  int layer = -1;                // linear: its block, and the Linears the tensor holds
  std::vector<LinearKey> parts;  // (one; Phi-3's fused parts; a stacked tensor's experts)
  std::int64_t weights = 0;
  std::vector<std::uint64_t> bytes;  // per candidate, as the budget counts them; 0: cannot take it
  std::vector<double> error;         // output error e per candidate (NaN: not measured)
  std::vector<double> kl;            // KL with only this tensor rounded (NaN: not measured)
  std::size_t reference = 0;         // the candidate kl_scaled measures

  TensorCosts(std::string name, TensorUse use, std::int64_t weights, std::vector<std::uint64_t> bytes);
};

// The candidates: their names (GGUF types, compressed-tensors schemes) and bits
// per weight (what the reference of kl_scaled is chosen by).
struct MixCandidates {
  std::vector<std::string> names;
  std::vector<double> bits;
};

// Rounds tensor t's float weights w (of its Linear `part`; null for an
// embedding or head) onto candidate k as the final run will and returns them
// dequantized; h: H of the part's input, else null.
using CandidateRounder =
    std::function<MatrixRM(const TensorCosts& t, const LinearKey* part, std::size_t k,
                           const MatrixRM& w, const Eigen::MatrixXd* h)>;
// The float weights of an embedding or head tensor.
using TableWeights = std::function<MatrixRM(const TensorCosts& t)>;

// The bytes the mixed tensors may take in all, each padded to `alignment`.
struct MixBudgetBytes {
  std::uint64_t bytes = 0;
  std::uint64_t alignment = 1;
  std::uint64_t padded(std::uint64_t b) const { return (b + alignment - 1) / alignment * alignment; }
};

// What every format's mix shares.
struct MixContext {
  const Model& model;
  const Recipe& recipe;
  const MixCandidates& candidates;
  const QuantizeProgress& progress;
};

// The costs, measured (Recipe::measures_mix_costs) or read from the record
// recipe.mix.costs of an `output` mix (which must hold every tensor at every
// candidate it can take: InputError naming the file, tensor and candidate
// else), each tensor's kl_scaled reference set for `budget`. Returns the KL
// windows.
int mix_costs(const MixContext& mix, const CalibrationSet* calibration, int batch_windows,
              std::string_view output, const MixBudgetBytes& budget, const CandidateRounder& round,
              const TableWeights& table, std::vector<TensorCosts>& costs);

// InputError naming `flag` (the budget as given) when every tensor at its
// smallest candidate, with the `needed` bytes of the rest, exceeds the budget
// (checked before anything is measured). The least budget is said in bytes, or,
// with `bpw_weights` > 0, as bits per `unit` over that many weights.
void check_mix_fits(std::span<const TensorCosts> costs, const MixBudgetBytes& budget,
                    std::uint64_t needed, const std::string& flag, std::int64_t bpw_weights,
                    std::string_view unit);

// The chosen candidate per tensor (check_mix_fits passed).
std::vector<std::size_t> choose_mix(std::span<const TensorCosts> costs, MixPredictor predictor,
                                    const MixBudgetBytes& budget);

// The record (mix.json) of a choice: `head` (output, budget, ...), then per
// tensor its chosen candidate, bytes and every candidate's costs.
std::string mix_record(nlohmann::ordered_json head, const MixContext& mix,
                       std::span<const TensorCosts> costs, std::span<const std::size_t> chosen,
                       int windows);

}  // namespace ptq
