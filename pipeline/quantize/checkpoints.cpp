#include "pipeline/quantize/checkpoints.hpp"

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hash.hpp"
#include "io/hdf5.hpp"

namespace ptq {

std::string run_fingerprint(const Model& model, const Recipe& recipe,
                            const CalibrationSet* calibration) {
  Fnv1a64 h;
  h.update(model.path().string());
  h.update(recipe_to_yaml(recipe));
  if (calibration)
    for (const auto& w : calibration->windows) h.update(std::as_bytes(std::span(w.ids)));
  return h.hex();
}

ResumeCheckpoints::ResumeCheckpoints(std::filesystem::path dir, std::string fingerprint,
                                     double activation_seconds)
    : dir_(std::move(dir)),
      fingerprint_(std::move(fingerprint)),
      activation_seconds_(activation_seconds),
      activations_saved_(std::chrono::steady_clock::now()) {
  std::filesystem::create_directories(dir_);
}

std::filesystem::path ResumeCheckpoints::block_file(int layer) const {
  return dir_ / ("block_" + std::to_string(layer) + ".h5");
}

void ResumeCheckpoints::save(int layer, int layers, const std::vector<QuantizedLinear>& block,
                             const std::optional<BlockScales>& scales, const MatrixRM* x) {
  H5Writer b(block_file(layer));
  for (const auto& q : block) write_quantized_linear(b, q, Timing::record);
  if (scales) write_block_scales(b, *scales);
  b.commit();
  const auto now = std::chrono::steady_clock::now();
  const bool due =
      std::chrono::duration<double>(now - activations_saved_).count() >= activation_seconds_ &&
      layer + 1 < layers;
  if (x == nullptr || due) {
    save_activations(layer, x);
    activations_saved_ = std::chrono::steady_clock::now();
  }
}

// The point a resume starts from: after block `layer`, with the stream x there
// (null when the method runs without activations).
void ResumeCheckpoints::save_activations(int layer, const MatrixRM* x) const {
  H5Writer a(dir_ / "activations.h5");
  a.set_attribute("/", "fingerprint", fingerprint_);
  a.set_attribute("/", "after_layer", std::int64_t{layer});
  if (x != nullptr) a.write<float>("x", std::span(x->data(), x->size()), {x->rows(), x->cols()});
  a.commit();
}

int ResumeCheckpoints::load(const Model& model, const Recipe& recipe, MatrixRM* x,
                            QuantizedLinears& done, std::vector<BlockScales>* scales) const {
  if (!std::filesystem::exists(dir_ / "activations.h5")) return 0;
  H5Reader a(dir_ / "activations.h5");
  if (a.string_attribute("/", "fingerprint") != fingerprint_)
    throw input_error(dir_.string(), "a checkpoint of the same model, recipe and calibration data",
                      "one of another run (remove it or drop --resume)");
  const int last = static_cast<int>(a.int_attribute("/", "after_layer"));
  if (x != nullptr) {
    const auto v = a.read<float>("x");
    PTQ_ASSERT(static_cast<Eigen::Index>(v.size()) == x->size());
    *x = Eigen::Map<const MatrixRM>(v.data(), x->rows(), x->cols());
  }
  for (int layer = 0; layer <= last; ++layer) {
    H5Reader b(block_file(layer));
    for (LinearRole role : all_linear_roles)
      done.add_stored(block_file(layer), read_linear_report(b, layer, role));
    if (recipe.folds_scales() && scales != nullptr)
      scales->push_back(read_block_scales(b, layer, model.config(), recipe.spec));
  }
  return last + 1;
}

}  // namespace ptq
