#include "pipeline/recipe/calib_data.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/error.hpp"
#include "io/hash.hpp"
#include "io/ids_file.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"

namespace ptq {

CalibSourceSpec parse_calib_spec(std::string_view spec) {
  CalibSourceSpec out;
  std::string rest(spec);
  if (const auto eq = rest.find('='); eq != std::string::npos) {
    out.name = rest.substr(0, eq);
    rest = rest.substr(eq + 1);
  }
  if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    const std::string weight = rest.substr(colon + 1);
    char* end = nullptr;
    const double w = std::strtod(weight.c_str(), &end);
    if (weight.empty() || *end != '\0' || !(w >= 0.0) || !std::isfinite(w))
      throw input_error("--calib " + std::string(spec), "NAME=PATH[:WEIGHT] with WEIGHT a number >= 0",
                        "weight '" + weight + "'");
    out.weight = w;
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) throw input_error("--calib " + std::string(spec), "NAME=PATH[:WEIGHT]", "an empty path");
  out.path = rest;
  if (out.name.empty()) out.name = out.path.stem().string();
  return out;
}

void CalibConfig::validate() const {
  if (samples < 1) throw input_error("--samples", "at least 1", std::to_string(samples));
  if (seqlen < 2) throw input_error("--seqlen", "at least 2", std::to_string(seqlen));
}

namespace {

// splitmix64: a tiny generator whose output is the same on every platform
// (std:: distributions are not), so the same seed picks the same windows everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) by rejection (no modulo bias).
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    std::uint64_t x;
    do x = next(); while (x >= limit);
    return x % bound;
  }

 private:
  std::uint64_t state_;
};

// Documents of a text source: one file, every regular file of a folder (sorted), or jsonl records.
std::vector<std::string> read_documents(const std::filesystem::path& path, const std::string& field) {
  std::vector<std::string> docs;
  if (std::filesystem::is_directory(path)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(path))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) docs.push_back(read_utf8_text_file(f));
    if (docs.empty()) throw input_error(path.string(), "a folder with text files", "no files");
    return docs;
  }
  if (path.extension() != ".jsonl") return {read_utf8_text_file(path)};
  std::istringstream in(read_utf8_text_file(path));
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = path.string() + ":" + std::to_string(lineno);
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object()) throw input_error(where, "a JSON object", "invalid JSON");
    if (!record.contains(field) || !record[field].is_string())
      throw input_error(where, "a string field \"" + field + "\" (see --field)", "none");
    docs.push_back(record[field].get<std::string>());
  }
  return docs;
}

std::vector<std::int32_t> text_stream(const std::filesystem::path& path, const std::string& field,
                                      const Tokenizer& tokenizer, std::int32_t eos_id) {
  std::vector<std::int32_t> stream;
  for (const auto& doc : read_documents(path, field)) {
    const auto ids = tokenizer.encode(doc);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eos_id);  // documents are separated as in training data
  }
  return stream;
}

}  // namespace

CalibrationSet build_calibration_set(std::span<const CalibSourceSpec> sources, const CalibConfig& config,
                                     const Tokenizer* tokenizer, std::int32_t eos_id) {
  config.validate();
  if (sources.empty()) throw input_error("calibration data", "at least one --calib source", "none");
  double total_weight = 0.0;
  for (const auto& s : sources) total_weight += s.weight;
  if (!(total_weight > 0.0)) throw input_error("--calib weights", "a positive sum", "0");

  CalibrationSet set{config, {}, {}};
  SplitMix64 rng(config.seed);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const auto& spec = sources[i];
    if (!std::filesystem::exists(spec.path))
      throw input_error("--calib " + spec.name, "an existing file or folder", spec.path.string() + " is missing");
    const int wanted = static_cast<int>(std::lround(spec.weight / total_weight * config.samples));
    CalibSourceInfo info{spec, hash_path(spec.path), 0, wanted};
    const bool is_ids = spec.path.extension() == ".ids";
    if (!is_ids && tokenizer == nullptr)
      throw input_error("--calib " + spec.name, "a tokenizer for text sources", "none");
    const auto stream = is_ids ? read_ids(spec.path) : text_stream(spec.path, config.jsonl_field, *tokenizer, eos_id);
    info.stream_tokens = static_cast<std::int64_t>(stream.size());
    const std::int64_t len = config.seqlen;
    if (is_ids) {
      if (stream.size() % static_cast<std::size_t>(len) != 0 || info.stream_tokens / len < wanted)
        throw input_error(spec.path.string(),
                          std::to_string(wanted) + " windows of " + std::to_string(len) + " tokens",
                          std::to_string(stream.size()) + " tokens");
    } else if (info.stream_tokens <= len) {
      throw input_error(spec.path.string(), "more than " + std::to_string(len) + " tokens",
                        std::to_string(stream.size()));
    }
    for (int w = 0; w < wanted; ++w) {
      const std::int64_t start = is_ids ? w * len : static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(info.stream_tokens - len)));
      set.windows.push_back({static_cast<int>(i), start,
                             std::vector<std::int32_t>(stream.begin() + start, stream.begin() + start + len)});
    }
    set.sources.push_back(std::move(info));
  }
  return set;
}

void check_window_ids(const CalibrationSet& set, std::int32_t vocab_size) {
  std::vector<int> index_in_source(set.sources.size(), 0);
  for (const auto& w : set.windows) {
    const int window = index_in_source[static_cast<std::size_t>(w.source)]++;
    const auto bad = std::find_if(w.ids.begin(), w.ids.end(),
                                  [&](std::int32_t id) { return id < 0 || id >= vocab_size; });
    if (bad == w.ids.end()) continue;
    const auto& spec = set.sources[static_cast<std::size_t>(w.source)].spec;
    const auto position = bad - w.ids.begin();
    throw input_error(
        spec.path.string() + ": window " + std::to_string(window) + " (token " +
            std::to_string(w.start + position) + " of the source), position " +
            std::to_string(position),
        "a token id in [0, " + std::to_string(vocab_size) + ") (the model's vocab_size)",
        std::to_string(*bad));
  }
}

std::vector<const CalibWindow*> windows_of(const CalibrationSet& set, int source) {
  std::vector<const CalibWindow*> out;
  for (const auto& w : set.windows)
    if (w.source == source) out.push_back(&w);
  return out;
}

}  // namespace ptq
