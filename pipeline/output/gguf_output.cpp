#include "pipeline/output/gguf_output.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>

#include "algorithms/ggml_grid.hpp"
#include "calibrate/tensor_names.hpp"
#include "io/error.hpp"
#include "io/imatrix.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/gguf_policy.hpp"
#include "pipeline/formats/gguf_types.hpp"
#include "pipeline/output/gguf_linear.hpp"

namespace ptq {

namespace {

// The float type of a GGUF type id that gguf_float_type accepts.
GgufFloatType float_type_of(std::uint32_t type) {
  for (GgufFloatType t : {GgufFloatType::f32, GgufFloatType::f16, GgufFloatType::bf16})
    if (ggml_type_id(t) == type) return t;
  PTQ_ASSERT(false);
}

// Everything a tensor's bytes depend on, gathered once.
struct GgufJob {
  const ModelConfig config;
  const Checkpoint& checkpoint;
  bool exported;  // the Linears are an earlier run's: each must keep its grid
  const GgufPolicy* policy;     // llama-quantize's rules, or null: every type in `types`
  const GgufTypeMap& types;     // a mix's types (recipe.gguf_tensor_types)
  GgufModelShape shape;
  std::optional<Imatrix> imatrix;
  const QuantizedLinears& linears;
  std::map<std::string, std::vector<std::size_t>> linear_index;  // by HF tensor name
  std::map<std::string, const ReplacedTensor*> replaced;  // norms AWQ's scales fold into

  // The run's Linear `hf_name`, read now (QuantizedLinears may keep it on disk), or null.
  std::shared_ptr<const QuantizedLinear> linear(const std::string& hf_name) const {
    const auto it = linear_index.find(hf_name);
    return it == linear_index.end() ? nullptr : linears.get(it->second, hf_name);
  }

  // A block Linear's own rounding when it landed on `grid` (the policy may give
  // a Linear another type than the one GPTQ rounded onto, e.g. Q4_1 beside Q4_0).
  std::optional<GgmlBlocks> rounded(const QuantizedLinear* q, const std::string& hf_name,
                                    GgmlGrid grid) const {
    if (q == nullptr) return std::nullopt;
    const auto* m = std::get_if<QuantizedMatrix>(&q->weight);
    std::optional<GgmlBlocks> blocks = m ? exact_ggml_blocks(*m, grid) : std::nullopt;
    if (!blocks && exported)
      throw input_error(hf_name,
                        std::string(ggml_grid_info(grid).name) +
                            " blocks holding the run's grid exactly (4/5/8-bit symmetric "
                            "groups of multiples of 32 with float16 scales)",
                        "a grid they cannot hold");
    return blocks;
  }

  // The tensor's type: the grid its Linear was rounded onto (`own`), else the
  // policy's or the mix's; nullopt for a tensor llama-quantize copies.
  std::optional<std::uint32_t> tensor_type(const GgufTensorPlan& plan,
                                           const GgmlBlocks* own) const {
    const GgufQuantizeFlags flags{.pure = false, .imatrix = imatrix.has_value()};
    if (own != nullptr) return gguf_type_id(own->grid);
    if (policy != nullptr) return gguf_tensor_type(*policy, plan.gguf_name, plan.ne, shape, flags);
    return types.at(plan.gguf_name);
  }

  // One Linear's blocks on `grid`: those it was rounded onto, the run's
  // rounding when the grid holds it, else ggml's quantizer on `source`
  // (called only then: the float weights).
  GgmlBlocks linear_blocks(const QuantizedLinear* q, const std::string& hf_name, GgmlGrid grid,
                           const std::function<MatrixRM()>& source,
                           std::span<const float> weights) const {
    if (const GgmlBlocks* own = q ? std::get_if<GgmlBlocks>(&q->weight) : nullptr) {
      PTQ_ASSERT(own->grid == grid);  // one rule types every expert of a stacked tensor
      return *own;
    }
    std::optional<GgmlBlocks> blocks = rounded(q, hf_name, grid);
    // The source weights lack the folded scales (Recipe::validate_format keeps
    // every block Linear of a folding run on the grid it was rounded onto).
    PTQ_ASSERT(blocks || replaced.empty() || q == nullptr);
    return blocks ? std::move(*blocks) : ggml_quantize(grid, source(), weights);
  }

  GgufTensorData tensor(const GgufTensorPlan& plan) const {
    if (const auto it = replaced.find(plan.hf_name); it != replaced.end()) {
      PTQ_ASSERT(plan.storage == GgufStorage::f32);  // only norms and routers are replaced
      return gguf_values_tensor(plan, it->second->values, GgufFloatType::f32);
    }
    if (plan.storage == GgufStorage::f32)
      return gguf_float_tensor(plan, checkpoint, config, GgufFloatType::f32);
    // A block Linear, or a stacked tensor's experts, one Linear per row range.
    std::vector<std::string> names;
    for (const GgufExpertPart& part : plan.experts) names.push_back(part.hf_name);
    if (names.empty()) names.push_back(plan.hf_name);
    std::vector<std::shared_ptr<const QuantizedLinear>> q;
    for (const std::string& name : names) q.push_back(linear(name));
    const GgmlBlocks* own = q[0] ? std::get_if<GgmlBlocks>(&q[0]->weight) : nullptr;
    const std::optional<std::uint32_t> type = tensor_type(plan, own);
    if (!type || gguf_float_type(*type))
      return gguf_float_tensor(plan, checkpoint, config,
                               type ? float_type_of(*type) : GgufFloatType::f16);
    const std::optional<GgmlGrid> grid = gguf_grid(*type);
    if (!grid)
      throw input_error(plan.gguf_name, "a GGUF type ptq quantizes to",
                        "type id " + std::to_string(*type));
    const std::vector<float> weights =
        imatrix ? gguf_plan_importance(*imatrix, plan) : std::vector<float>{};
    std::optional<MatrixRM> source;  // read once, on the first Linear that needs it
    const Eigen::Index rows = plan.rows() / static_cast<Eigen::Index>(names.size());
    const auto cols = static_cast<std::size_t>(plan.cols());
    std::vector<std::byte> bytes;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto part_source = [&] {
        if (!source) source = gguf_source_tensor(plan, checkpoint, config);
        return MatrixRM(source->middleRows(static_cast<Eigen::Index>(i) * rows, rows));
      };
      const std::span<const float> part_weights =
          weights.empty() ? std::span<const float>() : std::span(weights).subspan(i * cols, cols);
      const std::vector<std::byte> packed =
          pack(linear_blocks(q[i].get(), names[i], *grid, part_source, part_weights));
      bytes.insert(bytes.end(), packed.begin(), packed.end());
    }
    return {*type, to_gguf_row_order(plan, bytes)};
  }
};

// Null for a mix (gguf_type auto, its types resolved by the run).
const GgufPolicy* policy_of(const Recipe& recipe) {
  if (!recipe.gguf_tensor_types.empty()) return nullptr;
  const GgufPolicy* policy = find_policy(recipe.gguf_type);
  PTQ_ASSERT(policy != nullptr);  // Recipe::validate checked it
  return policy;
}

}  // namespace

void write_gguf_file(const std::filesystem::path& source_model, const Checkpoint& tensors,
                     const std::filesystem::path& out_file, const Recipe& recipe,
                     const QuantizedLinears& linears, std::span<const ReplacedTensor> replaced,
                     bool exported) {
  const ModelConfig config = load_model_config(source_model);
  GgufJob job{
      config,  tensors, exported, policy_of(recipe), recipe.gguf_tensor_types, {}, std::nullopt,
      linears, {},      {}};
  for (const ReplacedTensor& r : replaced) job.replaced[r.name] = &r;
  job.shape = gguf_model_shape(config);
  if (!recipe.imatrix.empty()) job.imatrix = read_imatrix(recipe.imatrix);
  job.linear_index = linears.by_weight_name(config);
  const std::vector<GgufTensorPlan> plan = gguf_tensor_plan(config, job.checkpoint);
  if (job.policy == nullptr) check_gguf_types(job.types, plan, "the run's GGUF types");
  const std::uint32_t file_type =
      job.policy != nullptr ? job.policy->file_type : gguf_mix_file_type(job.types, plan);
  const auto metadata = gguf_metadata(source_model, config, {.file_type = file_type, .name = {}});
  write_gguf_model(out_file, metadata, plan,
                   [&](const GgufTensorPlan& p) { return job.tensor(p); });
}

}  // namespace ptq
