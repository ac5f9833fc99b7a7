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

// One Linear input of one layer, mixed: in_sum2 and counts as documented in the header.
ImatrixEntry mixed_entry(const CalibrationStats& stats, int layer, LinearInput input,
                         std::span<const double> weights) {
  std::vector<const InputStats*> sources;
  double tokens = 0.0;
  for (std::size_t s = 0; s < weights.size(); ++s) {
    const InputStats& source = stats.at(layer, input, static_cast<int>(s));
    sources.push_back(&source);
    if (weights[s] > 0.0) tokens += static_cast<double>(source.tokens);
  }
  const Eigen::VectorXd mean = mix_stats(sources, weights).mean_square;
  ImatrixEntry entry;
  entry.in_sum2.resize(static_cast<std::size_t>(mean.size()));
  for (Eigen::Index j = 0; j < mean.size(); ++j) {
    entry.in_sum2[static_cast<std::size_t>(j)] = static_cast<float>(mean[j] * tokens);
  }
  entry.counts = {static_cast<float>(tokens)};
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
  for (std::size_t layer = 0; layer < stats.experts.size(); ++layer)
    if (!stats.experts[layer].empty())
      throw input_error(
          "calibration statistics: layers/" + std::to_string(layer) + "/experts",
          "dense MLPs (ptq writes no GGUF experts, so no imatrix entries for them, yet)",
          std::to_string(stats.experts[layer].size()) + " experts");
  Imatrix imatrix;
  // The statistics file does not record the family: each input's entry goes
  // under every name a GGUF file may give a Linear reading it, the unfused
  // families' (attn_q, ..., ffn_up) and Phi-3's (attn_qkv; its ffn_up, gate and
  // up fused, reads the MLP input as the unfused ffn_up does). llama-quantize
  // looks up the tensors its file has.
  ModelConfig phi3;
  phi3.arch = Architecture::Phi3;
  for (int layer = 0; layer < static_cast<int>(stats.layers.size()); ++layer) {
    for (LinearInput input : all_linear_inputs) {
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
