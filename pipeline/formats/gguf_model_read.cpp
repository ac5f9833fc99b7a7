// Reading a GGUF model's tensors back as float32 in the Hugging Face layout
// (gguf_model_config, the metadata's inverse, is in gguf_model_metadata.cpp).
#include <array>
#include <string>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_model.hpp"

namespace ptq {
namespace {

struct FloatDType {
  std::uint32_t ggml_type;
  DType dtype;
};
constexpr std::array<FloatDType, 3> kFloatDTypes{
    {{0, DType::F32}, {1, DType::F16}, {30, DType::BF16}}};

// [rows, cols] float32 of a tensor in any type ptq decodes.
MatrixRM decode(const gguf::TensorInfo& t, const std::string& where) {
  const std::int64_t rows = t.rows();
  const std::int64_t cols = t.ne.at(0);
  for (const auto& f : kFloatDTypes) {
    if (f.ggml_type != t.type) continue;
    MatrixRM W(rows, cols);
    convert_to_float(f.dtype, t.data.data(), static_cast<std::size_t>(W.size()), W.data(), where);
    return W;
  }
  const auto grid = gguf_grid(t.type);
  if (!grid) {
    const auto* info = gguf::find_tensor_type(t.type);
    throw input_error(where, "F32, F16, BF16 or a block type ptq has a grid for",
                      info ? std::string(info->name) : "type id " + std::to_string(t.type));
  }
  return dequantize(unpack(*grid, rows, cols, t.data));
}

}  // namespace

MatrixRM read_gguf_tensor(const gguf::File& file, const GgufTensorPlan& plan) {
  const std::string where = file.path().string() + ": tensor " + plan.gguf_name;
  const gguf::TensorInfo& t = file.require_tensor(plan.gguf_name);
  MatrixRM W = decode(t, where);
  if (plan.rope_heads == 0) return W;
  if (plan.ne.size() > 1) {
    unpermute_rows_from_gguf(W, plan.rope_heads);
    return W;
  }
  MatrixRM column = W.transpose();  // a bias: its elements are the permuted rows
  unpermute_rows_from_gguf(column, plan.rope_heads);
  return column.transpose();
}

}  // namespace ptq
