#include "pipeline/recipe/provenance.hpp"

#include <algorithm>
#include <bit>

#include "io/hash.hpp"

namespace ptq {

std::string model_hash(const std::filesystem::path& model) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(model))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Fnv1a64 h;
  for (const auto& f : files) h.update(hash_path(f));
  return h.hex();
}

void write_calibration_record(H5Writer& out, const std::string& group, const CalibrationSet& set,
                              WindowRecord record) {
  out.set_attribute(group, "samples", std::int64_t{set.config.samples});
  out.set_attribute(group, "seqlen", std::int64_t{set.config.seqlen});
  out.set_attribute(group, "seed", static_cast<std::int64_t>(set.config.seed));
  for (const auto& s : set.sources) {
    const std::string g = group + "/sources/" + s.spec.name;
    out.set_attribute(
        g, "path",
        (record == WindowRecord::token_ids ? s.spec.path : s.spec.path.filename()).string());
    out.set_attribute(g, "content_hash", s.content_hash);
    out.set_attribute(g, "weight", s.spec.weight);
    out.set_attribute(g, "windows", std::int64_t{s.windows});
  }
  std::vector<std::int32_t> ids, source_of;
  std::vector<std::int64_t> start, hash;
  for (const auto& w : set.windows) {
    if (record == WindowRecord::token_ids) ids.insert(ids.end(), w.ids.begin(), w.ids.end());
    Fnv1a64 h;
    h.update(std::as_bytes(std::span(w.ids)));
    hash.push_back(std::bit_cast<std::int64_t>(h.digest()));
    source_of.push_back(w.source);
    start.push_back(w.start);
  }
  const auto n = static_cast<std::int64_t>(set.windows.size());
  out.write<std::int64_t>(group + "/window_hash", hash, {n});
  out.write<std::int32_t>(group + "/window_source", source_of, {n});
  out.write<std::int64_t>(group + "/window_start", start, {n});
  if (record == WindowRecord::token_ids)
    out.write<std::int32_t>(group + "/window_ids", ids, {n, set.config.seqlen});
}

Recipe recorded_recipe(const Recipe& recipe, WindowRecord record) {
  Recipe shown = recipe;
  if (record == WindowRecord::hashes)
    for (auto& s : shown.sources) s.path = s.path.filename();
  return shown;
}

}  // namespace ptq
