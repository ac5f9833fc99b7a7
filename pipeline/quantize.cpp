#include "pipeline/quantize.hpp"

#include <chrono>

#include "algorithms/rtn.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hash.hpp"
#include "pipeline/quantized_store.hpp"

namespace ptq {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Block inputs in execution order; the Linears reading each form one
// true-sequential group.
constexpr std::array<LinearInput, 4> kInputOrder = {LinearInput::attention_in, LinearInput::attention_out,
                                                    LinearInput::mlp_in, LinearInput::mlp_hidden};

std::vector<LinearRole> roles_reading(LinearInput input) {
  std::vector<LinearRole> roles;
  for (const auto& spec : linear_specs)
    if (spec.input == input) roles.push_back(spec.role);
  return roles;
}

// Gathers statistics of one block input, ignoring the others.
class InputCollector : public LinearObserver {
 public:
  InputCollector(LinearInput wanted, int in_features) : wanted_(wanted), stats_(in_features) {}
  void observe(int, std::span<const LinearRole> roles, const RowMatrix& x) override {
    if (linear_spec(roles.front()).input == wanted_) stats_.add(x);
  }
  const InputStats& stats() const { return stats_; }

 private:
  LinearInput wanted_;
  InputStats stats_;
};

// Runs a block over all calibration windows, `batch` windows at a time, in
// window order (so statistics accumulate in the same order for any thread count).
// With `update`, x becomes the block's output; otherwise x is left unchanged.
void run_block(const ModelConfig& config, const BlockWeights& w, RowMatrix& x, int seq_len, int batch,
               bool update, const ForwardOptions& options) {
  const Eigen::Index rows_per_batch = static_cast<Eigen::Index>(batch) * seq_len;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += rows_per_batch) {
    const Eigen::Index rows = std::min(rows_per_batch, x.rows() - r0);
    Activations act{x.middleRows(r0, rows), seq_len};
    block_forward(config, w, act, options);
    if (update) x.middleRows(r0, rows) = act.x;
  }
}

QuantizedLinear quantize_linear(const Recipe& recipe, int layer, LinearRole role, const RowMatrix& w,
                                const InputStats* stats) {
  const auto t0 = Clock::now();
  QuantizedLinear q{layer, role, {}, {}, {}};
  q.report.layer = layer;
  q.report.role = role;
  if (recipe.method == Method::Rtn) {
    q.matrix = rtn_quantize(w, recipe.spec);
  } else {
    PTQ_ASSERT(stats != nullptr);
    // The reference's Hessian scaling, 2/n X^T X, so losses compare with it.
    const Eigen::MatrixXd h = 2.0 * stats->mean_xtx();
    GptqResult r = gptq_quantize(w, h, recipe.gptq_config());
    q.matrix = std::move(r.quantized);
    q.report.gptq_loss = r.loss;
    q.report.damping = r.damping;
    q.report.damping_retries = r.damping_retries;
    q.report.cholesky_failed = r.status == GptqStatus::CholeskyFailed;
  }
  q.report.weight_mse = weight_mse(w, q.matrix.dequantize());
  q.report.seconds = seconds_since(t0);
  return q;
}

// Quantizes the Linears of one block in true-sequential order, replacing each
// group's weights by their dequantized values before the next group's
// statistics are gathered; then advances x through the quantized block.
std::vector<QuantizedLinear> quantize_block(const Model& model, const Recipe& recipe, int layer, RowMatrix* x,
                                            int seq_len, int batch, const QuantizeProgress& progress) {
  const ModelConfig& config = model.config();
  BlockWeights w = model.load_block(layer);
  std::vector<QuantizedLinear> out;
  for (LinearInput input : kInputOrder) {
    const auto roles = roles_reading(input);
    std::optional<InputCollector> collector;
    if (recipe.needs_calibration()) {
      collector.emplace(input, linear_in_features(config, roles.front()));
      run_block(config, w, *x, seq_len, batch, false, ForwardOptions{&*collector, nullptr, input});
    }
    for (LinearRole role : roles) {
      out.push_back(quantize_linear(recipe, layer, role, w.weight(role), collector ? &collector->stats() : nullptr));
      w.weight(role) = out.back().dequantize();
      if (progress.log) {
        const auto& r = out.back().report;
        char line[160];
        std::snprintf(line, sizeof line, "layer %d %-4s  weight mse %.3e  gptq loss %.4g  %.2fs%s", layer,
                      std::string(linear_role_name(role)).c_str(), r.weight_mse, r.gptq_loss, r.seconds,
                      r.damping_retries ? "  (Cholesky retried with more damping)" : "");
        progress.log(line);
      }
    }
  }
  if (x != nullptr && recipe.needs_calibration()) run_block(config, w, *x, seq_len, batch, true, {});
  return out;
}

// ---- resume checkpoints: block_<i>.h5 (its Linears) and activations.h5 (x after
// the last finished block, with a fingerprint of the run it belongs to).

std::filesystem::path block_file(const std::filesystem::path& dir, int layer) {
  return dir / ("block_" + std::to_string(layer) + ".h5");
}

std::string run_fingerprint(const Model& model, const Recipe& recipe, const CalibrationSet* calibration) {
  Fnv1a64 h;
  h.update(model.path().string());
  h.update(recipe_to_yaml(recipe));
  if (calibration)
    for (const auto& w : calibration->windows) h.update(std::as_bytes(std::span(w.ids)));
  return h.hex();
}

void save_checkpoint(const std::filesystem::path& dir, int layer, const std::vector<QuantizedLinear>& block,
                     const RowMatrix* x, const std::string& fingerprint) {
  H5Writer b(block_file(dir, layer));
  for (const auto& q : block) write_quantized_linear(b, q, true);
  b.commit();
  H5Writer a(dir / "activations.h5");
  a.set_attribute("/", "fingerprint", fingerprint);
  a.set_attribute("/", "after_layer", std::int64_t{layer});
  if (x != nullptr) a.write<float>("x", std::span(x->data(), x->size()), {x->rows(), x->cols()});
  a.commit();
}

// Loads finished blocks; returns the first layer still to do.
int load_checkpoint(const std::filesystem::path& dir, const std::string& fingerprint, RowMatrix* x,
                    std::vector<QuantizedLinear>& done) {
  if (!std::filesystem::exists(dir / "activations.h5")) return 0;
  H5Reader a(dir / "activations.h5");
  if (a.string_attribute("/", "fingerprint") != fingerprint)
    throw input_error(dir.string(), "a checkpoint of the same model, recipe and calibration data",
                      "one of another run (remove it or drop --resume)");
  const int last = static_cast<int>(a.int_attribute("/", "after_layer"));
  if (x != nullptr) {
    const auto v = a.read<float>("x");
    PTQ_ASSERT(static_cast<Eigen::Index>(v.size()) == x->size());
    *x = Eigen::Map<const RowMatrix>(v.data(), x->rows(), x->cols());
  }
  for (int layer = 0; layer <= last; ++layer) {
    H5Reader b(block_file(dir, layer));
    for (LinearRole role : all_linear_roles) done.push_back(read_quantized_linear(b, layer, role));
  }
  return last + 1;
}

RowMatrix embed_windows(const Model& model, const CalibrationSet& calibration) {
  std::vector<std::int32_t> ids;
  for (const auto& w : calibration.windows) ids.insert(ids.end(), w.ids.begin(), w.ids.end());
  return model.embed(ids);
}

}  // namespace

std::vector<QuantizedLinear> quantize_blocks(const Model& model, const Recipe& recipe,
                                             const CalibrationSet* calibration,
                                             const QuantizeRunOptions& options,
                                             const QuantizeProgress& progress) {
  recipe.validate();
  if (recipe.needs_calibration() && (calibration == nullptr || calibration->windows.empty()))
    throw input_error(std::string(method_name(recipe.method)), "calibration data (--calib or --calib-ids)", "none");
  RowMatrix x;
  if (recipe.needs_calibration()) x = embed_windows(model, *calibration);
  RowMatrix* xp = recipe.needs_calibration() ? &x : nullptr;
  const int seq_len = calibration ? calibration->config.seqlen : 0;

  const std::string fingerprint = run_fingerprint(model, recipe, calibration);
  std::vector<QuantizedLinear> out;
  int first = 0;
  if (!options.checkpoint_dir.empty()) {
    std::filesystem::create_directories(options.checkpoint_dir);
    if (options.resume) first = load_checkpoint(options.checkpoint_dir, fingerprint, xp, out);
    if (first > 0 && progress.log) progress.log("resuming after block " + std::to_string(first - 1));
  }
  for (int layer = first; layer < model.num_layers(); ++layer) {
    auto block = quantize_block(model, recipe, layer, xp, seq_len, options.batch_windows, progress);
    if (!options.checkpoint_dir.empty()) save_checkpoint(options.checkpoint_dir, layer, block, xp, fingerprint);
    std::move(block.begin(), block.end(), std::back_inserter(out));
  }
  return out;
}

}  // namespace ptq
