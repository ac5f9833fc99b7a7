#include "calibrate/model.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include "algorithms/parallel_gemm.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

// Checkpoint::require with the shape braced at the call.
const TensorView& require_shape(const Checkpoint& ckpt, const std::string& name,
                                const std::vector<std::int64_t>& shape) {
  return ckpt.require(name, shape);
}

// A NaN or infinity in a checkpoint would run to the end, every GPTQ Linear
// falling back to RTN and the eval printing ppl nan, with exit 0.
void require_finite(std::span<const float> values, const TensorView& t, std::int64_t first_index) {
  const auto bad =
      std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  if (bad == values.end()) return;
  throw input_error(t.file.string() + ": tensor " + t.name + ", element " +
                        std::to_string(first_index + (bad - values.begin())),
                    "finite values", std::isnan(*bad) ? "NaN" : "infinity");
}

// Rows [first, first + rows) of a matrix (all rows by default), or of a vector's
// elements: a Linear stored inside a fused tensor is a row range of it.
// `rows` x `cols` elements of a tensor from element `offset` on.
MatrixRM elements(const TensorView& t, std::int64_t offset, std::int64_t rows, std::int64_t cols) {
  MatrixRM m(rows, cols);
  convert_to_float(t.dtype, t.bytes.data() + offset * dtype_size(t.dtype),
                   static_cast<std::size_t>(m.size()), m.data(), t.name);
  require_finite({m.data(), static_cast<std::size_t>(m.size())}, t, offset);
  return m;
}

MatrixRM to_matrix(const TensorView& t, std::int64_t first = 0, std::int64_t rows = -1) {
  if (rows < 0) rows = t.shape[0];
  return elements(t, first * t.shape[1], rows, t.shape[1]);
}

VectorF to_vector(const TensorView& t, std::int64_t first = 0, std::int64_t count = -1) {
  if (count < 0) count = t.shape[0];
  VectorF v(count);
  convert_to_float(t.dtype, t.bytes.data() + first * dtype_size(t.dtype),
                   static_cast<std::size_t>(count), v.data(), t.name);
  require_finite({v.data(), static_cast<std::size_t>(v.size())}, t, first);
  return v;
}

bool bias_required(const ModelConfig& c, BiasRule rule) {
  switch (rule) {
    case BiasRule::attention_bias:
      return c.attention_bias;
    case BiasRule::mlp_bias:
      return c.mlp_bias;
    case BiasRule::optional:
      return false;
  }
  return false;
}

bool is_mlp(LinearRole role) {
  return role == LinearRole::gate || role == LinearRole::up || role == LinearRole::down;
}

// A mixture-of-experts layer's router and experts, in either layout (MoeTensors).
void load_moe(const Checkpoint& ckpt, const ModelConfig& c, int layer, BlockWeights& w) {
  const MoeTensors names =
      moe_tensors(c, layer, [&](const std::string& name) { return ckpt.find(name) != nullptr; });
  for (const ExpectedTensor& t : moe_source_tensors(c, layer, names)) ckpt.require(t.name, t.shape);
  w.router = to_matrix(ckpt.require(names.router + ".weight"));
  w.experts.resize(static_cast<std::size_t>(c.moe.experts));
  for (int e = 0; e < c.moe.experts; ++e) {
    for (LinearRole role : expert_roles) {
      const ExpertRows rows = expert_rows(c, layer, names, e, expert_linear(role));
      const auto [out, in] = expert_shape(c, expert_linear(role));
      w.experts[static_cast<std::size_t>(e)].weight(role) =
          elements(ckpt.require(rows.tensor), rows.first_row * in, out, in);
    }
  }
}

}  // namespace

Model::Model(std::filesystem::path path, ModelConfig config, Checkpoint checkpoint)
    : path_(std::move(path)), config_(std::move(config)), checkpoint_(std::move(checkpoint)) {
  const std::int64_t vocab = config_.vocab_size, hidden = config_.hidden_size;
  embedding_ = &require_shape(checkpoint_, std::string(embed_tokens_name), {vocab, hidden});
  final_norm_ = norm_vector(std::string(final_norm_name), hidden);
  head_ = std::make_shared<Head>();
  head_->tensor = config_.tie_word_embeddings
                      ? embedding_
                      : &require_shape(checkpoint_, std::string(lm_head_name), {vocab, hidden});
}

VectorF Model::norm_vector(const std::string& name, std::int64_t size) const {
  VectorF v = to_vector(require_shape(checkpoint_, name, {size}));
  if (config_.norm_plus_one) v.array() += 1.0f;  // Gemma: x * (1 + w), in float32 as transformers
  return v;
}

const MatrixRM& Model::head_weights() const {
  std::call_once(head_->converted, [&] { head_->weights = to_matrix(*head_->tensor); });
  return head_->weights;
}

Model Model::open(const std::filesystem::path& path) {
  ModelConfig config = load_model_config(path);
  config.validate(path);
  return Model(path, std::move(config), Checkpoint::open(path));
}

Model Model::from_checkpoint(const std::filesystem::path& path, ModelConfig config,
                             Checkpoint checkpoint) {
  config.validate(path);
  return Model(path, std::move(config), std::move(checkpoint));
}

BlockWeights Model::load_block(int layer) const {
  PTQ_ASSERT(layer >= 0 && layer < config_.num_layers);
  BlockWeights w;
  w.layer = layer;
  const bool moe = config_.is_moe(layer);
  if (moe) load_moe(checkpoint_, config_, layer, w);
  for (const LinearSpec& spec : linear_specs) {
    if (moe && is_mlp(spec.role)) continue;
    const std::int64_t out = linear_out_features(config_, spec.role);
    const std::int64_t in = linear_in_features(config_, spec.role);
    const LinearStorage stored = linear_storage(config_, spec.role);
    const std::string module = block_tensor_name(layer, stored.module);
    const auto i = static_cast<std::size_t>(spec.role);
    w.linear[i] = to_matrix(require_shape(checkpoint_, module + ".weight", {stored.rows, in}),
                            stored.first_row, out);
    if (bias_required(config_, spec.bias) || checkpoint_.find(module + ".bias")) {
      w.bias[i] = to_vector(require_shape(checkpoint_, module + ".bias", {stored.rows}),
                            stored.first_row, out);
    }
  }
  for (NormRole role : all_norm_roles) {
    const std::string_view suffix = norm_tensor_suffix(config_, role);
    if (suffix.empty()) continue;
    w.norm(role) = norm_vector(block_tensor_name(layer, suffix), norm_size(config_, role));
  }
  return w;
}

MatrixRM Model::embed(std::span<const std::int32_t> ids) const {
  const int hidden = config_.hidden_size;
  const std::size_t row_bytes = static_cast<std::size_t>(hidden) * dtype_size(embedding_->dtype);
  MatrixRM x(static_cast<Eigen::Index>(ids.size()), hidden);
  for (std::size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < 0 || ids[t] >= config_.vocab_size) {
      throw input_error("token " + std::to_string(t),
                        "an id in [0, " + std::to_string(config_.vocab_size) + ")",
                        std::to_string(ids[t]));
    }
    float* row = x.row(static_cast<Eigen::Index>(t)).data();
    convert_to_float(embedding_->dtype, embedding_->bytes.data() + ids[t] * row_bytes, hidden, row,
                     embedding_->name);
    require_finite({row, static_cast<std::size_t>(hidden)}, *embedding_,
                   std::int64_t{ids[t]} * hidden);
  }
  if (config_.embed_scale != 1.0) x *= static_cast<float>(config_.embed_scale);
  return x;
}

void Model::final_norm(MatrixRM& x) const {
  rms_norm_rows(x, final_norm_, static_cast<float>(config_.rms_norm_eps));
}

MatrixRM Model::head(const MatrixRM& x, Eigen::Index begin, Eigen::Index count) const {
  PTQ_ASSERT(begin >= 0 && begin + count <= x.rows());
  const MatrixRM& head = head_weights();
  MatrixRM out(count, head.rows());
  parallel_gemm(x.middleRows(begin, count), head, GemmOp::transposed, out, GemmOutput::overwrite);
  if (const auto cap = static_cast<float>(config_.final_logit_softcap); cap > 0)
    out = (out.array() * (1.0f / cap)).tanh() * cap;  // Gemma 2
  return out;
}

bool BlockSource::keeps_resident(const ModelConfig& c, std::size_t budget_bytes) {
  return static_cast<std::size_t>(block_linear_weights(c)) * sizeof(float) * c.num_layers <=
         budget_bytes;
}

BlockSource::BlockSource(const Model& model, std::size_t budget_bytes)
    : model_(model), resident_(keeps_resident(model.config(), budget_bytes)) {
  const ModelConfig& c = model.config();
  if (resident_) {
    for (int i = 0; i < c.num_layers; ++i) blocks_.push_back(model.load_block(i));
  }
}

const BlockWeights& BlockSource::block(int layer) {
  if (resident_) return blocks_[static_cast<std::size_t>(layer)];
  if (current_ != layer) {
    blocks_.clear();
    blocks_.push_back(model_.load_block(layer));
    current_ = layer;
  }
  return blocks_.front();
}

MatrixRM final_hidden(const Model& model, BlockSource& blocks, std::span<const std::int32_t> ids,
                      int seq_len, const ForwardOptions& options) {
  PTQ_ASSERT(seq_len > 0 && ids.size() % static_cast<std::size_t>(seq_len) == 0);
  Activations act{model.embed(ids), seq_len};
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    block_forward(model.config(), blocks.block(layer), act, options);
  }
  model.final_norm(act.x);
  return std::move(act.x);
}

MatrixRM logits(const Model& model, std::span<const std::int32_t> ids, int seq_len,
                const ForwardOptions& options) {
  BlockSource streamed(model, 0);
  const MatrixRM hidden = final_hidden(model, streamed, ids, seq_len, options);
  return model.head(hidden, 0, hidden.rows());
}

}  // namespace ptq
