#pragma once
// A GGUF file's per-tensor types as data: what a mix chose (`--gguf-type
// auto`, pipeline/quantize/gguf_mix.hpp) or replays (pipeline/formats/mix_file.hpp).
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/mix_file.hpp"

namespace ptq {

using GgufTypeMap = std::map<std::string, std::uint32_t, std::less<>>;  // GGUF name -> type id

// The type ids of a mix's type names; InputError naming `where` and the tensor
// for a name that is not a GGUF type ptq writes (F16, Q4_K, IQ4_XS, ...).
GgufTypeMap gguf_type_map(const MixTypes& types, const std::string& where);
MixTypes gguf_type_names(const GgufTypeMap& types);

// Checks that `types` gives every tensor of `plan` stored in the file's type
// (GgufStorage::weight) a type whose blocks fit its rows, and names no other
// tensor; InputError naming `where` and the tensor otherwise.
void check_gguf_types(const GgufTypeMap& types, std::span<const GgufTensorPlan> plan,
                      const std::string& where);

// general.file_type for a mix: llama-quantize's file type whose base type is the
// type holding the most weights.
std::uint32_t gguf_mix_file_type(const GgufTypeMap& types, std::span<const GgufTensorPlan> plan);

}  // namespace ptq
