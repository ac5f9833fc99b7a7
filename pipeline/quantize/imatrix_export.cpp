#include "pipeline/quantize/imatrix_export.hpp"

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "io/error.hpp"
#include "pipeline/output/gguf_linear.hpp"

namespace ptq {
namespace {

// One input's statistics over the sources, mixed: in_sum2 and its count as
// documented in the header, appended to `entry` as one more matrix.
void append_mixed(ImatrixEntry& entry, const std::vector<const InputStats*>& sources,
                  std::span<const double> weights) {
  double tokens = 0.0;
  for (std::size_t s = 0; s < weights.size(); ++s)
    if (weights[s] > 0.0) tokens += static_cast<double>(sources[s]->tokens);
  const Eigen::VectorXd mean = mix_stats(sources, weights).mean_square;
  for (Eigen::Index j = 0; j < mean.size(); ++j)
    entry.in_sum2.push_back(static_cast<float>(mean[j] * tokens));
  entry.counts.push_back(static_cast<float>(tokens));
}

// One Linear input of one layer.
ImatrixEntry mixed_entry(const CalibrationStats& stats, int layer, LinearInput input,
                         std::span<const double> weights) {
  std::vector<const InputStats*> sources;
  for (std::size_t s = 0; s < weights.size(); ++s)
    sources.push_back(&stats.at(layer, input, static_cast<int>(s)));
  ImatrixEntry entry;
  append_mixed(entry, sources, weights);
  return entry;
}

// A mixture layer's stacked experts, one matrix per expert over the tokens
// routed to it (as llama-imatrix counts them): gate and up read `mlp_in`, down
// `mlp_hidden`.
ImatrixEntry expert_entry(const std::vector<ExpertInputStats>& experts, bool down,
                          std::span<const double> weights) {
  ImatrixEntry entry;
  for (const ExpertInputStats& expert : experts) {
    std::vector<const InputStats*> sources;
    for (const InputStats& s : down ? expert.mlp_hidden : expert.mlp_in) sources.push_back(&s);
    append_mixed(entry, sources, weights);
  }
  return entry;
}

// "NAME=WEIGHT" of the sources in the mix, weights as given (%g).
std::vector<std::string> mixed_sources(const CalibStatsInfo& info,
                                       std::span<const double> weights) {
  std::vector<std::string> names;
  for (std::size_t s = 0; s < weights.size(); ++s) {
    if (weights[s] <= 0.0) continue;
    char weight[32];
    std::snprintf(weight, sizeof(weight), "%g", weights[s]);
    names.push_back(info.sources[s] + "=" + weight);
  }
  return names;
}

}  // namespace

Imatrix calibration_imatrix(const CalibrationStats& stats, std::span<const double> weights) {
  PTQ_ASSERT(weights.size() == stats.info.sources.size());
  if (stats.layers.empty() || stats.info.seqlen < 1) {
    throw input_error("calibration statistics", "layers and a window length", "none");
  }
  Imatrix imatrix;
  // The statistics file does not record the family: each input's entry goes
  // under every name a GGUF file may give a Linear reading it, the unfused
  // families' (attn_q, ..., ffn_up) and Phi-3's (attn_qkv; its ffn_up, gate and
  // up fused, reads the MLP input as the unfused ffn_up does). llama-quantize
  // looks up the tensors its file has. A mixture layer's experts go under their
  // stacked tensors' names.
  ModelConfig phi3;
  phi3.arch = Architecture::Phi3;
  for (int layer = 0; layer < static_cast<int>(stats.layers.size()); ++layer) {
    const bool mixture =
        static_cast<std::size_t>(layer) < stats.experts.size() && !stats.experts[layer].empty();
    if (mixture)
      for (GgufTensorRole role :
           {GgufTensorRole::ffn_gate, GgufTensorRole::ffn_up, GgufTensorRole::ffn_down})
        imatrix.entries[gguf_weight_name(role, layer, /*experts=*/true)] =
            expert_entry(stats.experts[layer], role == GgufTensorRole::ffn_down, weights);
    for (LinearInput input : all_linear_inputs) {
      if (mixture && (input == LinearInput::mlp_in || input == LinearInput::mlp_hidden)) continue;
      const ImatrixEntry entry = mixed_entry(stats, layer, input, weights);
      for (LinearRole role : all_linear_roles) {
        if (linear_spec(role).input != input) continue;
        for (const ModelConfig& family : {ModelConfig{}, phi3})
          imatrix.entries[gguf_linear_name(family, layer, role)] = entry;
      }
    }
  }
  imatrix.datasets = mixed_sources(stats.info, weights);
  imatrix.chunk_size = static_cast<std::uint32_t>(stats.info.seqlen);
  const float tokens = imatrix.entries.begin()->second.counts.at(0);
  imatrix.chunk_count = static_cast<std::uint32_t>(std::lround(tokens / stats.info.seqlen));
  return imatrix;
}

}  // namespace ptq
