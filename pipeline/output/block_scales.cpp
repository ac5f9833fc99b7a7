#include "pipeline/output/block_scales.hpp"

#include <array>
#include <string>

#include "io/error.hpp"

namespace ptq {

namespace {

struct SiteInfo {
  FoldSite site;
  std::string_view name;
  std::span<const LinearRole> roles;
  LinearInput input;
};

constexpr std::array<LinearRole, 3> kQkv = {LinearRole::q, LinearRole::k, LinearRole::v};
constexpr std::array<LinearRole, 1> kO = {LinearRole::o};
constexpr std::array<LinearRole, 2> kGateUp = {LinearRole::gate, LinearRole::up};
constexpr std::array<LinearRole, 1> kDown = {LinearRole::down};

// Indexed by FoldSite.
constexpr std::array<SiteInfo, 4> kSites = {{
    {FoldSite::input_norm, "input_norm", kQkv, LinearInput::attention_in},
    {FoldSite::v, "v", kO, LinearInput::attention_out},
    {FoldSite::post_attention_norm, "post_attention_norm", kGateUp, LinearInput::mlp_in},
    {FoldSite::up, "up", kDown, LinearInput::mlp_hidden},
}};

const SiteInfo& info(FoldSite site) {
  const SiteInfo& s = kSites[static_cast<std::size_t>(site)];
  PTQ_ASSERT(s.site == site);
  return s;
}

std::string block_path(int layer) { return "awq/layers/" + std::to_string(layer); }

std::string shape_text(const std::vector<std::int64_t>& shape) {
  if (shape.size() != 2) return "another rank";
  return "[" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]";
}

}  // namespace

std::span<const LinearRole> scaled_roles(FoldSite site) { return info(site).roles; }
LinearInput scaled_input(FoldSite site) { return info(site).input; }
std::string_view fold_site_name(FoldSite site) { return info(site).name; }

void write_block_scales(H5Writer& out, const BlockScales& block) {
  const std::string p = block_path(block.layer);
  for (const ScaleGroup& g : block.scales) {
    const std::string d = p + "/scales/" + std::string(fold_site_name(g.site));
    out.write<float>(d, std::span(g.scales.data(), g.scales.size()), {g.scales.size()});
    std::string roles;
    for (LinearRole r : scaled_roles(g.site)) {
      if (!roles.empty()) roles += ',';
      roles += linear_role_name(r);
    }
    out.set_attribute(d, "roles", roles);
    out.set_attribute(d, "ratio", double{g.ratio});
    out.set_attribute(d, "loss", g.loss);
  }
  for (const WeightClip& c : block.clips) {
    const std::string d = p + "/clip/" + std::string(linear_role_name(c.role));
    out.write<float>(d, std::span(c.max_val.data(), c.max_val.size()),
                     {c.max_val.rows(), c.max_val.cols()});
  }
}

BlockScales read_block_scales(const H5Reader& in, int layer, const ModelConfig& config,
                              const QuantSpec& spec) {
  const std::string p = block_path(layer);
  if (!in.has(p))
    throw input_error(in.path().string() + ": " + p, "AWQ scales of layer " + std::to_string(layer),
                      "no such group");
  BlockScales out{layer, {}, {}};
  for (const SiteInfo& site : kSites) {
    const std::string d = p + "/scales/" + std::string(site.name);
    if (!in.has(d)) continue;
    const auto values = in.read<float>(d);
    const int in_features = linear_in_features(config, site.roles.front());
    if (static_cast<int>(values.size()) != in_features)
      throw input_error(in.path().string() + ": " + d, std::to_string(in_features) + " scales",
                        std::to_string(values.size()));
    ScaleGroup g{site.site, Eigen::Map<const VectorF>(values.data(), in_features), 0.0f, 0.0};
    g.ratio = static_cast<float>(in.float_attribute(d, "ratio"));
    g.loss = in.float_attribute(d, "loss");
    out.scales.push_back(std::move(g));
  }
  for (LinearRole role : all_linear_roles) {
    const std::string d = p + "/clip/" + std::string(linear_role_name(role));
    if (!in.has(d)) continue;
    const auto shape = in.shape(d);
    const int cols = linear_in_features(config, role);
    const std::vector<std::int64_t> want = {linear_out_features(config, role),
                                            spec.groups_per_row(cols)};
    if (shape != want)
      throw input_error(in.path().string() + ": " + d,
                        "clip bounds " + shape_text(want) + " (same group size)",
                        shape_text(shape));
    const auto values = in.read<float>(d);
    out.clips.push_back({role, Eigen::Map<const MatrixRM>(values.data(), want[0], want[1])});
  }
  return out;
}

}  // namespace ptq
