#include "pipeline/quantize/gguf_mix.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <span>

#include "algorithms/ggml_grid.hpp"
#include "io/error.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/output/gguf_linear.hpp"
#include "pipeline/quantize/sensitivity.hpp"

namespace ptq {

namespace {

using json = nlohmann::ordered_json;
constexpr std::uint32_t kF32 = 0, kF16 = 1;

// The bytes the weight tensors may take, and what else the budget holds.
struct GgufBudgetBytes {
  MixBudgetBytes weights;
  std::uint64_t needed = 0;       // the header and float tensors (max_bytes), or the float tensors
  std::int64_t all_weights = 0;   // of all tensors (--bpw counts bits per these)
};

GgufBudgetBytes gguf_budget(const MixBudget& budget, const std::filesystem::path& model_dir,
                            const ModelConfig& config, std::span<const GgufTensorPlan> plan) {
  GgufBudgetBytes b;
  std::uint64_t total = 0;
  for (const GgufTensorPlan& p : plan) b.all_weights += p.cols() * p.rows();
  if (budget.bpw != 0) {
    for (const GgufTensorPlan& p : plan)
      if (p.storage == GgufStorage::f32) b.needed += std::uint64_t(p.cols() * p.rows()) * 4;
    total = static_cast<std::uint64_t>(std::floor(budget.bpw * double(b.all_weights) / 8.0));
  } else {
    // The file: its header (gguf::file_layout), then every tensor padded.
    const auto metadata = gguf_metadata(model_dir, config, {.file_type = 0, .name = {}});
    std::vector<gguf::TensorToWrite> infos;
    for (const GgufTensorPlan& p : plan)
      infos.push_back({p.gguf_name, p.ne, p.storage == GgufStorage::f32 ? kF32 : kF16, {}});
    const gguf::FileLayout layout = gguf::file_layout(metadata, infos);
    b.weights.alignment = layout.alignment;
    b.needed = layout.data_offset;
    for (const GgufTensorPlan& p : plan)
      if (p.storage == GgufStorage::f32)
        b.needed += b.weights.padded(gguf::tensor_bytes(*gguf::find_tensor_type(kF32), p.ne));
    total = budget.max_bytes;
  }
  b.weights.bytes = total > b.needed ? total - b.needed : 0;
  return b;
}

struct GgufCandidates {
  MixCandidates mix;
  std::vector<const gguf::TensorTypeInfo*> types;
};

GgufCandidates gguf_candidates(const Recipe& recipe) {
  GgufCandidates c;
  for (const std::string& name : recipe.mix_candidates()) {
    const gguf::TensorTypeInfo* info = gguf::find_tensor_type(name);  // Recipe::validate checked it
    c.mix.names.push_back(name);
    c.mix.bits.push_back(8.0 * info->type_size / info->block_size);
    c.types.push_back(info);
  }
  return c;
}

// Every weight tensor of the file with the candidates whose blocks fit its rows.
std::vector<TensorCosts> gguf_costs(std::span<const GgufTensorPlan> plan, const ModelConfig& config,
                                    const GgufCandidates& candidates) {
  std::vector<TensorCosts> costs;
  for (const GgufTensorPlan& p : plan) {
    if (p.storage != GgufStorage::weight) continue;
    std::vector<std::uint64_t> bytes;
    for (const gguf::TensorTypeInfo* type : candidates.types)
      bytes.push_back(p.cols() % type->block_size == 0 ? gguf::tensor_bytes(*type, p.ne) : 0);
    const GgufTensorName name = parse_gguf_tensor_name(p.gguf_name);
    TensorUse use = TensorUse::linear;
    if (name.role == GgufTensorRole::token_embd)
      use = config.tie_word_embeddings ? TensorUse::tied_embedding : TensorUse::embedding;
    if (name.role == GgufTensorRole::output) use = TensorUse::head;
    TensorCosts t(p.gguf_name, use, p.cols() * p.rows(), std::move(bytes));
    if (use == TensorUse::linear) {  // the Linears it holds (Phi-3's fused parts; experts)
      t.layer = name.layer;
      if (t.layer >= 0 && t.layer < config.num_layers)
        for (const LinearKey& key : block_linears(config, t.layer))
          if (gguf_linear_name(config, t.layer, key.role) == p.gguf_name) t.parts.push_back(key);
      if (t.parts.empty())
        throw input_error(p.gguf_name, "a block Linear, the token embedding or the head",
                          "another tensor");
    }
    costs.push_back(std::move(t));
  }
  return costs;
}

}  // namespace

GgufMix choose_gguf_mix(const Model& model, const Recipe& recipe,
                        const CalibrationSet* calibration, int batch_windows,
                        const QuantizeProgress& progress) {
  PTQ_ASSERT(recipe.chooses_mix());
  const ModelConfig& config = model.config();
  const Checkpoint checkpoint = Checkpoint::open(model.path());
  const std::vector<GgufTensorPlan> plan = gguf_tensor_plan(config, checkpoint);
  const GgufCandidates candidates = gguf_candidates(recipe);
  const GgufBudgetBytes budget = gguf_budget(recipe.mix, model.path(), config, plan);
  std::vector<TensorCosts> costs = gguf_costs(plan, config, candidates);
  check_mix_fits(costs, budget.weights, budget.needed,
                 recipe.mix.bpw != 0 ? "--bpw " + std::to_string(recipe.mix.bpw)
                                     : "--max-bytes " + std::to_string(recipe.mix.max_bytes),
                 recipe.mix.bpw != 0 ? budget.all_weights : 0, "weight");

  // Each tensor's importance (gguf_plan_importance), read once for all candidates.
  std::map<std::string, std::vector<float>> importance;
  if (!recipe.imatrix.empty()) {
    const Imatrix imatrix = read_imatrix(recipe.imatrix);
    for (const GgufTensorPlan& p : plan)
      if (p.storage == GgufStorage::weight)
        importance[p.gguf_name] = gguf_plan_importance(imatrix, p);
  }
  // As the final run rounds: GPTQ inside the grid for a block Linear, ggml's
  // own quantizer (with the imatrix when given) for RTN and the embeddings.
  const CandidateRounder round = [&](const TensorCosts& t, const LinearKey* part, std::size_t k,
                                     const MatrixRM& w, const Eigen::MatrixXd* h) {
    const GgmlGrid grid = *gguf_grid(candidates.types[k]->id);
    if (recipe.method == Method::Gptq && h != nullptr) {
      LinearReport unused;
      return dequantize(gguf_gptq(recipe, grid, w, *h, unused));
    }
    const auto it = importance.find(t.name);
    std::span<const float> weights;
    if (it != importance.end() && !it->second.empty()) weights = it->second;
    // A stacked expert tensor's importance holds one slice of columns per expert.
    if (part != nullptr && part->expert >= 0 && !weights.empty())
      weights = weights.subspan(static_cast<std::size_t>(part->expert * w.cols()),
                                static_cast<std::size_t>(w.cols()));
    return dequantize(ggml_quantize(grid, w, weights));
  };
  const TableWeights table = [&](const TensorCosts& t) {
    const auto p = std::find_if(plan.begin(), plan.end(),
                                [&](const GgufTensorPlan& q) { return q.gguf_name == t.name; });
    return gguf_source_tensor(*p, checkpoint, config);
  };
  const MixContext mix{model, recipe, candidates.mix, progress};
  const int windows =
      mix_costs(mix, calibration, batch_windows, "gguf", budget.weights, round, table, costs);
  const std::vector<std::size_t> chosen = choose_mix(costs, recipe.mix.predictor, budget.weights);

  GgufMix out;
  for (std::size_t i = 0; i < costs.size(); ++i) out.types[costs[i].name] = candidates.types[chosen[i]]->id;
  json head = {{"output", "gguf"}};
  head["budget"] = recipe.mix.bpw != 0 ? json{{"bpw", recipe.mix.bpw}}
                                       : json{{"max_bytes", recipe.mix.max_bytes}};
  head["weight_budget_bytes"] = budget.weights.bytes;
  out.json = mix_record(head, mix, costs, chosen, windows);
  return out;
}

}  // namespace ptq
