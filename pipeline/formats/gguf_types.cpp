#include "pipeline/formats/gguf_types.hpp"

#include <algorithm>

#include "io/error.hpp"
#include "io/gguf.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_policy.hpp"

namespace ptq {

GgufTypeMap gguf_type_map(const MixTypes& types, const std::string& where) {
  GgufTypeMap out;
  for (const auto& [name, type] : types) {
    const gguf::TensorTypeInfo* info = gguf::find_tensor_type(type);
    if (info == nullptr || !(gguf_float_type(info->id) || gguf_grid(info->id)))
      throw input_error(where + ": " + name, "a GGUF type ptq writes (F16, Q4_K, IQ4_XS, ...)",
                        "\"" + type + "\"");
    out[name] = info->id;
  }
  return out;
}

MixTypes gguf_type_names(const GgufTypeMap& types) {
  MixTypes out;
  for (const auto& [name, type] : types) out[name] = std::string(gguf::find_tensor_type(type)->name);
  return out;
}

void check_gguf_types(const GgufTypeMap& types, std::span<const GgufTensorPlan> plan,
                      const std::string& where) {
  std::size_t typed = 0;
  for (const GgufTensorPlan& p : plan) {
    if (p.storage != GgufStorage::weight) continue;
    const auto it = types.find(p.gguf_name);
    if (it == types.end())
      throw input_error(where, "a type for " + p.gguf_name, "none");
    const gguf::TensorTypeInfo& info = *gguf::find_tensor_type(it->second);
    if (p.cols() % info.block_size != 0)
      throw input_error(where + ": " + p.gguf_name,
                        "a type whose blocks divide its rows of " + std::to_string(p.cols()),
                        std::string(info.name) + " (blocks of " + std::to_string(info.block_size) +
                            ")");
    ++typed;
  }
  if (typed != types.size())
    for (const auto& entry : types)  // not a structured binding: clang 14 cannot capture one
      if (std::none_of(plan.begin(), plan.end(), [&](const GgufTensorPlan& p) {
            return p.gguf_name == entry.first && p.storage == GgufStorage::weight;
          }))
        throw input_error(where, "only the model's weight tensors", entry.first);
}

std::uint32_t gguf_mix_file_type(const GgufTypeMap& types, std::span<const GgufTensorPlan> plan) {
  std::map<std::uint32_t, std::int64_t> weights;
  for (const GgufTensorPlan& p : plan)
    if (const auto it = types.find(p.gguf_name); it != types.end())
      weights[it->second] += p.cols() * p.rows();
  PTQ_ASSERT(!weights.empty());
  const auto most = std::max_element(weights.begin(), weights.end(), [](const auto& a, const auto& b) {
                      return a.second < b.second;
                    })->first;
  for (const GgufPolicy& policy : gguf_policies())
    if (policy.base_type == most) return policy.file_type;
  PTQ_ASSERT(false);
}

}  // namespace ptq
