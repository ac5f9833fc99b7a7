#include "pipeline/quantize/checkpoints.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <utility>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hash.hpp"
#include "io/hdf5.hpp"

namespace ptq {

namespace {

std::string hash_of(const MatrixRM& x) {
  Fnv1a64 h;
  h.update(std::as_bytes(std::span(x.data(), static_cast<std::size_t>(x.size()))));
  return h.hex();
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::vector<std::string> split(const std::string& joined) {
  std::vector<std::string> items;
  for (std::size_t begin = 0; begin < joined.size();) {
    const std::size_t end = std::min(joined.find(',', begin), joined.size());
    items.push_back(joined.substr(begin, end - begin));
    begin = end + 1;
  }
  return items;
}

void require_checksum(const std::filesystem::path& file, const std::string& saved,
                      const std::string& found) {
  if (saved != found)
    throw input_error(file.string(), "the checksum saved with the checkpoint (" + saved + ")",
                      found + ": the file changed since (remove the folder or drop --resume)");
}

}  // namespace

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
                             const std::optional<BlockScales>& scales,
                             const CheckpointStreams& streams) {
  H5Writer b(block_file(layer));
  for (const auto& q : block) write_quantized_linear(b, q, Timing::record);
  if (scales) write_block_scales(b, *scales);
  b.commit();
  block_hashes_.resize(static_cast<std::size_t>(layer));
  block_hashes_.push_back(hash_path(block_file(layer)));
  const auto now = std::chrono::steady_clock::now();
  const bool due =
      std::chrono::duration<double>(now - activations_saved_).count() >= activation_seconds_ &&
      layer + 1 < layers;
  if (streams.x == nullptr || due) {
    if (streams.x != nullptr && streams.refresh) streams.refresh();
    save_activations(layer, streams);
    activations_saved_ = std::chrono::steady_clock::now();
  }
}

namespace {
// Each stream a run has, by its dataset name in activations.h5.
std::array<std::pair<std::string, MatrixRM*>, 2> named(const CheckpointStreams& streams) {
  return {{{"x", streams.x}, {"float_x", streams.float_x}}};
}
}  // namespace

// The point a resume starts from: after block `layer`, with the streams there.
void ResumeCheckpoints::save_activations(int layer, const CheckpointStreams& streams) const {
  H5Writer a(dir_ / "activations.h5");
  a.set_attribute("/", "fingerprint", fingerprint_);
  a.set_attribute("/", "after_layer", std::int64_t{layer});
  a.set_attribute("/", "block_hashes", joined(block_hashes_));
  for (const auto& [name, x] : named(streams)) {
    if (x == nullptr) continue;
    a.write<float>(name, std::span(x->data(), x->size()), {x->rows(), x->cols()});
    a.set_attribute("/", name + "_hash", hash_of(*x));
  }
  a.commit();
}

int ResumeCheckpoints::load(const Model& model, const Recipe& recipe,
                            const CheckpointStreams& streams, QuantizedLinears& done,
                            std::vector<BlockScales>* scales) {
  const std::filesystem::path activations = dir_ / "activations.h5";
  if (!std::filesystem::exists(activations)) return 0;
  H5Reader a(activations);
  if (a.string_attribute("/", "fingerprint") != fingerprint_)
    throw input_error(dir_.string(), "a checkpoint of the same model, recipe and calibration data",
                      "one of another run (remove it or drop --resume)");
  const std::int64_t last = a.int_attribute("/", "after_layer");
  const std::vector<std::string> saved = split(a.string_attribute("/", "block_hashes"));
  if (last < 0 || last >= model.num_layers() || saved.size() != static_cast<std::size_t>(last + 1))
    throw input_error(
        activations.string() + ": after_layer",
        "a block of the model with a checksum for it and each before",
        std::to_string(last) + " with " + std::to_string(saved.size()) + " checksums");
  for (const auto& [name, x] : named(streams)) {
    if (x == nullptr) continue;
    const auto v = a.read<float>(name);
    if (static_cast<Eigen::Index>(v.size()) != x->size())
      throw input_error(activations.string() + ": " + name, std::to_string(x->size()) + " values",
                        std::to_string(v.size()));
    *x = Eigen::Map<const MatrixRM>(v.data(), x->rows(), x->cols());
    require_checksum(activations, a.string_attribute("/", name + "_hash"), hash_of(*x));
  }
  for (std::size_t layer = 0; layer < saved.size(); ++layer) {
    block_hashes_.push_back(hash_path(block_file(static_cast<int>(layer))));
    require_checksum(block_file(static_cast<int>(layer)), saved[layer], block_hashes_.back());
  }
  for (int layer = 0; layer <= last; ++layer) {
    H5Reader b(block_file(layer));
    for (const LinearKey& key : block_linears(model.config(), layer))
      done.add_stored(block_file(layer), read_linear_report(b, key));
    if (recipe.folds_scales() && scales != nullptr)
      scales->push_back(read_block_scales(b, layer, model.config(), recipe.spec));
  }
  return static_cast<int>(last) + 1;
}

}  // namespace ptq
