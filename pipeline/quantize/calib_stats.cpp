#include "pipeline/quantize/calib_stats.hpp"

#include <array>
#include <utility>

#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "pipeline/recipe/provenance.hpp"

namespace ptq {

std::string_view linear_input_name(LinearInput input) {
  switch (input) {
    case LinearInput::attention_in: return "attention_in";
    case LinearInput::attention_out: return "attention_out";
    case LinearInput::mlp_in: return "mlp_in";
    case LinearInput::mlp_hidden: return "mlp_hidden";
  }
  return "?";
}

const InputStats& CalibrationStats::at(int layer, LinearInput input, int source) const {
  return layers.at(static_cast<std::size_t>(layer))[static_cast<std::size_t>(input)].at(
      static_cast<std::size_t>(source));
}

int CalibrationStats::source_index(const std::string& name) const {
  for (std::size_t i = 0; i < info.sources.size(); ++i)
    if (info.sources[i] == name) return static_cast<int>(i);
  throw input_error("calibration statistics", "a source named \"" + name + "\"", "none");
}

namespace {

std::string stats_group(int layer, LinearInput input, const std::string& source) {
  return "layers/" + std::to_string(layer) + "/" + std::string(linear_input_name(input)) + "/" + source;
}

constexpr std::string_view kHiddenAll = "mlp_hidden_all";

// An expert's three statistics (ExpertInputStats) with their group names.
auto expert_parts(ExpertInputStats& s) {
  return std::array<std::pair<std::string_view, std::vector<InputStats>*>, 3>{
      {{linear_input_name(LinearInput::mlp_in), &s.mlp_in},
       {linear_input_name(LinearInput::mlp_hidden), &s.mlp_hidden},
       {kHiddenAll, &s.mlp_hidden_all}}};
}

std::string expert_group(int layer, int expert, std::string_view part, const std::string& source) {
  return "layers/" + std::to_string(layer) + "/experts/" + std::to_string(expert) + "/" +
         std::string(part) + "/" + source;
}

// One block's statistics as they are collected.
struct BlockStats {
  BlockInputStats inputs;
  std::vector<ExpertInputStats> experts;  // mixture layers
};

// Adds each observed input to the statistics of the source being run.
class SourceCollector : public LinearObserver {
 public:
  explicit SourceCollector(BlockStats& stats) : stats_(stats) {}
  void set_source(int source) { source_ = static_cast<std::size_t>(source); }
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    const auto input = static_cast<std::size_t>(linear_spec(roles.front()).input);
    stats_.inputs[input][source_].add(x);
  }
  bool observes_experts() const override { return true; }
  void observe_expert(int, int expert, std::span<const LinearRole> roles, ExpertTokens tokens,
                      const MatrixRM& x) override {
    ExpertInputStats& e = stats_.experts.at(static_cast<std::size_t>(expert));
    std::vector<InputStats>& part =
        linear_spec(roles.front()).input == LinearInput::mlp_in
            ? e.mlp_in
            : (tokens == ExpertTokens::all ? e.mlp_hidden_all : e.mlp_hidden);
    part[source_].add(x);
  }

 private:
  BlockStats& stats_;
  std::size_t source_ = 0;
};

BlockStats empty_block_stats(const ModelConfig& config, int layer, std::size_t sources) {
  BlockStats stats;
  for (const auto& spec : linear_specs) {
    auto& per_source = stats.inputs[static_cast<std::size_t>(spec.input)];
    if (per_source.empty()) per_source.assign(sources, InputStats(linear_in_features(config, spec.role)));
  }
  if (!config.is_moe(layer)) return stats;
  stats.inputs[static_cast<std::size_t>(LinearInput::mlp_hidden)].clear();
  ExpertInputStats expert;
  expert.mlp_in.assign(sources, InputStats(config.hidden_size));
  expert.mlp_hidden.assign(sources, InputStats(config.moe.intermediate_size));
  expert.mlp_hidden_all = expert.mlp_hidden;
  stats.experts.assign(static_cast<std::size_t>(config.moe.experts), expert);
  return stats;
}

// Runs one block over every window in place, in batches of consecutive
// windows of one source (window order, so sums accumulate in a fixed order).
void run_block_by_source(const ModelConfig& config, const BlockWeights& w, const CalibrationSet& set,
                         MatrixRM& x, int batch_windows, SourceCollector& collector) {
  const auto source_changes = [&](int window) {
    return set.windows[static_cast<std::size_t>(window)].source != set.windows[static_cast<std::size_t>(window) - 1].source;
  };
  forward_windows(config, w, x, {set.config.seqlen, batch_windows, source_changes}, &collector, StreamUpdate::advance,
                  [&](int first, int) { collector.set_source(set.windows[static_cast<std::size_t>(first)].source); });
}

void write_stats(H5Writer& out, const std::string& group, const InputStats& s) {
  const auto n = static_cast<std::int64_t>(s.in_features());
  out.set_attribute(group, "tokens", s.tokens);
  out.write<float>(group + "/absmax", std::span(s.absmax.data(), s.absmax.size()), {n});
  out.write<double>(group + "/sum_sq", std::span(s.sum_sq.data(), s.sum_sq.size()), {n});
  out.write<double>(group + "/xtx", std::span(s.xtx.data(), s.xtx.size()), {n, n});
  const auto& counts = s.magnitudes.counts();
  const std::vector<std::int64_t> as_int(counts.begin(), counts.end());
  out.write<std::int64_t>(group + "/magnitudes", as_int, {static_cast<std::int64_t>(as_int.size())});
}

InputStats read_stats(const H5Reader& in, const std::string& group) {
  const auto absmax = in.read<float>(group + "/absmax");
  const auto n = static_cast<Eigen::Index>(absmax.size());
  const auto sum_sq = in.read<double>(group + "/sum_sq");
  const auto xtx = in.read<double>(group + "/xtx");
  const auto counts = in.read<std::int64_t>(group + "/magnitudes");
  if (static_cast<Eigen::Index>(sum_sq.size()) != n || static_cast<Eigen::Index>(xtx.size()) != n * n ||
      counts.size() != static_cast<std::size_t>(QuantileSketch::kBuckets + 1))
    throw input_error(in.path().string() + ": " + group,
                      "absmax, sum_sq, xtx and magnitudes of matching sizes", "mismatched sizes");
  InputStats s(static_cast<int>(n));
  s.tokens = in.int_attribute(group, "tokens");
  s.absmax = Eigen::Map<const Eigen::VectorXf>(absmax.data(), n);
  s.sum_sq = Eigen::Map<const Eigen::VectorXd>(sum_sq.data(), n);
  s.xtx = Eigen::Map<const Eigen::MatrixXd>(xtx.data(), n, n);
  s.magnitudes = QuantileSketch::from_counts({counts.begin(), counts.end()});
  return s;
}

std::string joined_names(const CalibrationSet& set) {
  std::string names;
  for (const auto& s : set.sources) names += (names.empty() ? "" : ",") + s.spec.name;
  return names;
}

}  // namespace

void collect_calibration_stats(const Model& model, const CalibrationSet& calibration,
                               int batch_windows, const std::filesystem::path& out_path,
                               const QuantizeProgress& progress, WindowRecord windows) {
  if (calibration.windows.empty()) throw input_error("ptq calibrate", "calibration windows", "none");
  H5Writer out(out_path);
  out.set_attribute("/", "format", std::string("ptq-calibration"));
  out.set_attribute("/", "format_version", kCalibStatsFormatVersion);
  out.set_attribute("/", "source_model", model.path().filename().string());
  out.set_attribute("/", "source_model_hash", model_hash(model.path()));
  out.set_attribute("/", "sources", joined_names(calibration));
  write_calibration_record(out, "calibration", calibration, windows);

  MatrixRM x = embed_windows(model, calibration);
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    BlockStats stats = empty_block_stats(model.config(), layer, calibration.sources.size());
    SourceCollector collector(stats);
    run_block_by_source(model.config(), model.load_block(layer), calibration, x, batch_windows, collector);
    for (std::size_t s = 0; s < calibration.sources.size(); ++s) {
      const std::string& source = calibration.sources[s].spec.name;
      for (LinearInput input : all_linear_inputs)
        if (const auto& per_source = stats.inputs[static_cast<std::size_t>(input)];
            !per_source.empty())
          write_stats(out, stats_group(layer, input, source), per_source[s]);
      for (std::size_t e = 0; e < stats.experts.size(); ++e)
        for (const auto& [part, per_source] : expert_parts(stats.experts[e]))
          write_stats(out, expert_group(layer, static_cast<int>(e), part, source),
                      (*per_source)[s]);
    }
    if (progress.log) progress.log("layer " + std::to_string(layer) + " done");
  }
  out.commit();
}

CalibrationStats load_calibration_stats(const std::filesystem::path& path) {
  H5Reader in(path);
  if (!in.has_attribute("/", "format") || in.string_attribute("/", "format") != "ptq-calibration")
    throw input_error(path.string(), "a ptq calibration file (format \"ptq-calibration\")", "another file");
  if (const auto v = in.int_attribute("/", "format_version"); v != kCalibStatsFormatVersion)
    throw input_error(path.string(), "format_version " + std::to_string(kCalibStatsFormatVersion),
                      std::to_string(v));
  CalibrationStats stats;
  auto& info = stats.info;
  info.source_model_hash = in.string_attribute("/", "source_model_hash");
  // The order of sources is the "sources" attribute (children() would be sorted by name).
  const std::string names = in.string_attribute("/", "sources");
  for (std::size_t a = 0, b; a <= names.size(); a = b + 1) {
    b = std::min(names.find(',', a), names.size());
    info.sources.push_back(names.substr(a, b - a));
  }
  for (const auto& source : info.sources) {
    const std::string g = "calibration/sources/" + source;
    info.weights.push_back(in.has_attribute(g, "weight") ? in.float_attribute(g, "weight") : 1.0);
  }
  info.samples = static_cast<int>(in.int_attribute("calibration", "samples"));
  info.seqlen = static_cast<int>(in.int_attribute("calibration", "seqlen"));
  info.seed = static_cast<std::uint64_t>(in.int_attribute("calibration", "seed"));
  const auto layers = in.children("layers");
  stats.layers.resize(layers.size());
  stats.experts.resize(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto layer = static_cast<int>(l);
    const bool moe = in.has("layers/" + std::to_string(l) + "/experts");
    for (LinearInput input : all_linear_inputs) {
      if (moe && input == LinearInput::mlp_hidden) continue;  // the experts' own
      for (const auto& source : info.sources)
        stats.layers[l][static_cast<std::size_t>(input)].push_back(
            read_stats(in, stats_group(layer, input, source)));
    }
    if (!moe) continue;
    stats.experts[l].resize(in.children("layers/" + std::to_string(l) + "/experts").size());
    for (std::size_t e = 0; e < stats.experts[l].size(); ++e)
      for (const auto& [part, per_source] : expert_parts(stats.experts[l][e]))
        for (const auto& source : info.sources)
          per_source->push_back(
              read_stats(in, expert_group(layer, static_cast<int>(e), part, source)));
  }
  return stats;
}

}  // namespace ptq
