// Writing a GGUF model file: a planned tensor's float data and bytes as the
// converter stores them, and the writer that walks the plan.
#include <algorithm>
#include <array>
#include <cstring>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "pipeline/formats/gguf_model.hpp"

namespace ptq {
namespace {

struct FloatTypeRow {
  GgufFloatType type;
  std::uint32_t ggml_type;  // ggml.h enum ggml_type
  std::uint32_t file_type;  // llama.h enum llama_ftype
  DType dtype;              // the checkpoint dtype whose bytes are stored as they are
};
constexpr std::array<FloatTypeRow, 3> kFloatTypes{{
    {GgufFloatType::f32, 0, 0, DType::F32},
    {GgufFloatType::f16, 1, 1, DType::F16},
    {GgufFloatType::bf16, 30, 32, DType::BF16},
}};

const FloatTypeRow& float_type_row(GgufFloatType type) {
  for (const auto& row : kFloatTypes) {
    if (row.type == type) return row;
  }
  PTQ_ASSERT(false && "GgufFloatType missing from kFloatTypes");
  return kFloatTypes[0];
}

// Little-endian element bytes of `values` in `type`, rounding to nearest even.
std::vector<std::byte> encode_floats(std::span<const float> values, GgufFloatType type) {
  const std::size_t size = type == GgufFloatType::f32 ? 4 : 2;
  std::vector<std::byte> out(values.size() * size);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == GgufFloatType::f32) {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
      continue;
    }
    const std::uint16_t bits =
        type == GgufFloatType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
    std::memcpy(out.data() + 2 * i, &bits, 2);
  }
  return out;
}

// A stacked expert tensor's rows, each part's from its source tensor.
MatrixRM stacked_rows(const GgufTensorPlan& plan, const Checkpoint& checkpoint) {
  const std::int64_t rows = plan.ne.at(1), cols = plan.cols();
  MatrixRM out(plan.rows(), cols);
  for (std::size_t i = 0; i < plan.experts.size(); ++i) {
    const GgufExpertPart& part = plan.experts[i];
    const TensorView& t = checkpoint.require(part.source);
    const std::size_t offset =
        static_cast<std::size_t>(part.source_row * cols) * dtype_size(t.dtype);
    PTQ_ASSERT(offset + static_cast<std::size_t>(rows * cols) * dtype_size(t.dtype) <=
               t.bytes.size());
    convert_to_float(t.dtype, t.bytes.data() + offset, static_cast<std::size_t>(rows * cols),
                     out.data() + static_cast<std::ptrdiff_t>(i) * rows * cols, t.name);
  }
  return out;
}

}  // namespace

std::uint32_t ggml_type_id(GgufFloatType type) { return float_type_row(type).ggml_type; }
std::uint32_t llama_file_type(GgufFloatType type) { return float_type_row(type).file_type; }

MatrixRM gguf_source_tensor(const GgufTensorPlan& plan, const Checkpoint& checkpoint,
                            const ModelConfig& config) {
  if (!plan.experts.empty()) return stacked_rows(plan, checkpoint);
  const std::vector<float> values = plan.hf_name.empty()
                                        ? gguf_config_tensor(plan, config)
                                        : checkpoint.require(plan.hf_name).to_float();
  const Eigen::Index cols = plan.cols();
  PTQ_ASSERT(static_cast<std::int64_t>(values.size()) == plan.rows() * cols);
  return Eigen::Map<const MatrixRM>(values.data(), plan.rows(), cols);
}

std::vector<float> gguf_plan_importance(const Imatrix& imatrix, const GgufTensorPlan& plan) {
  std::vector<float> v = imatrix.importance(plan.gguf_name).value_or(std::vector<float>{});
  const std::size_t matrices = std::max<std::size_t>(plan.experts.size(), 1);
  if (!v.empty() && v.size() != matrices * static_cast<std::size_t>(plan.cols()))
    throw input_error(plan.gguf_name + " in the imatrix",
                      std::to_string(matrices) + " x " + std::to_string(plan.cols()) + " values",
                      std::to_string(v.size()));
  return v;
}

GgufTensorData gguf_float_tensor(const GgufTensorPlan& plan, const Checkpoint& checkpoint,
                                 const ModelConfig& config, GgufFloatType type) {
  if (plan.storage == GgufStorage::f32) type = GgufFloatType::f32;
  const FloatTypeRow& row = float_type_row(type);
  const TensorView* source = plan.hf_name.empty() ? nullptr : &checkpoint.require(plan.hf_name);
  // The converter keeps F16 data as it is; we keep any dtype the target shares.
  if (source != nullptr && source->dtype == row.dtype && plan.offset == 0)
    return {row.ggml_type, to_gguf_row_order(plan, source->bytes)};
  const MatrixRM values = gguf_source_tensor(plan, checkpoint, config);
  return gguf_values_tensor(plan, {values.data(), static_cast<std::size_t>(values.size())}, type);
}

GgufTensorData gguf_values_tensor(const GgufTensorPlan& plan, std::span<const float> values,
                                  GgufFloatType type) {
  PTQ_ASSERT(static_cast<std::int64_t>(values.size()) == plan.rows() * plan.cols());
  if (plan.offset == 0)
    return {ggml_type_id(type), to_gguf_row_order(plan, encode_floats(values, type))};
  std::vector<float> shifted(values.begin(), values.end());
  for (float& v : shifted) v += plan.offset;
  return {ggml_type_id(type), to_gguf_row_order(plan, encode_floats(shifted, type))};
}

void write_gguf_model(const std::filesystem::path& out_file,
                      std::span<const std::pair<std::string, gguf::Value>> metadata,
                      std::span<const GgufTensorPlan> plan, const GgufTensorSource& source) {
  std::vector<gguf::TensorSlot> slots;
  slots.reserve(plan.size());
  for (const GgufTensorPlan& p : plan) slots.push_back({p.gguf_name, p.ne});
  gguf::write_streamed(out_file, metadata, slots, [&](std::size_t i) {
    GgufTensorData data = source(plan[i]);
    return gguf::ProducedTensor{data.type, std::move(data.bytes)};
  });
}

void write_float_gguf(const std::filesystem::path& model_dir, const std::filesystem::path& out_file,
                      GgufFloatType type) {
  const ModelConfig config = load_model_config(model_dir);
  const Checkpoint checkpoint = Checkpoint::open(model_dir);
  const auto plan = gguf_tensor_plan(config, checkpoint);
  const auto metadata =
      gguf_metadata(model_dir, config, {.file_type = llama_file_type(type), .name = ""});
  write_gguf_model(out_file, metadata, plan, [&](const GgufTensorPlan& p) {
    return gguf_float_tensor(p, checkpoint, config, type);
  });
}

}  // namespace ptq
