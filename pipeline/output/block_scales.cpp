#include "pipeline/output/block_scales.hpp"

#include <array>
#include <string>

#include "io/error.hpp"

namespace ptq {

namespace {

struct SiteInfo {
  FoldSite site;
  std::string_view name;
  LinearInput input;
  std::optional<NormRole> norm;  // else the Linear writing `input`'s first rows
  LinearRole previous;
};

// Indexed by FoldSite.
constexpr std::array<SiteInfo, 4> kSites = {{
    {FoldSite::input_norm, "input_norm", LinearInput::attention_in, NormRole::input, {}},
    {FoldSite::v, "v", LinearInput::attention_out, std::nullopt, LinearRole::v},
    {FoldSite::post_attention_norm,
     "post_attention_norm",
     LinearInput::mlp_in,
     NormRole::post_attention,
     {}},
    {FoldSite::up, "up", LinearInput::mlp_hidden, std::nullopt, LinearRole::up},
}};

const SiteInfo& info(FoldSite site) {
  const SiteInfo& s = kSites[static_cast<std::size_t>(site)];
  PTQ_ASSERT(s.site == site);
  return s;
}

std::string block_path(int layer) { return "awq/layers/" + std::to_string(layer); }

// "scales/<site>" or "clip/<role>" below the block, or its expert's.
std::string dataset(int layer, std::string_view kind, int expert, std::string_view name) {
  std::string d = block_path(layer) + "/" + std::string(kind) + "/";
  if (expert >= 0) d += "experts/" + std::to_string(expert) + "/";
  return d + std::string(name);
}

// [out, groups] of the clip bounds of a Linear of shape [out, in].
std::vector<std::int64_t> clip_shape(std::int64_t out, std::int64_t in, const QuantSpec& spec) {
  return {out, spec.groups_per_row(static_cast<int>(in))};
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  if (shape.size() != 2) return "another rank";
  return "[" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]";
}

}  // namespace

std::span<const LinearRole> scaled_roles(FoldSite site) { return roles_reading(info(site).input); }
LinearInput scaled_input(FoldSite site) { return info(site).input; }
std::string_view fold_site_name(FoldSite site) { return info(site).name; }
std::optional<NormRole> folded_norm(FoldSite site) { return info(site).norm; }

LinearRole folded_linear(FoldSite site) {
  PTQ_ASSERT(!info(site).norm);
  return info(site).previous;
}

void write_block_scales(H5Writer& out, const BlockScales& block) {
  for (const ScaleGroup& g : block.scales) {
    const std::string d = dataset(block.layer, "scales", g.expert, fold_site_name(g.site));
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
    const std::string d = dataset(block.layer, "clip", c.expert, linear_role_name(c.role));
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
  const auto read_scales = [&](FoldSite site, int expert, std::int64_t features) {
    const std::string d = dataset(layer, "scales", expert, fold_site_name(site));
    if (!in.has(d)) return;
    const auto values = in.read<float>(d);
    if (static_cast<std::int64_t>(values.size()) != features)
      throw input_error(in.path().string() + ": " + d, std::to_string(features) + " scales",
                        std::to_string(values.size()));
    ScaleGroup g{site, Eigen::Map<const VectorF>(values.data(), features), 0.0f, 0.0, expert};
    g.ratio = static_cast<float>(in.float_attribute(d, "ratio"));
    g.loss = in.float_attribute(d, "loss");
    out.scales.push_back(std::move(g));
  };
  const auto read_clip = [&](LinearRole role, int expert, std::vector<std::int64_t> want) {
    const std::string d = dataset(layer, "clip", expert, linear_role_name(role));
    if (!in.has(d)) return;
    const auto shape = in.shape(d);
    if (shape != want)
      throw input_error(in.path().string() + ": " + d,
                        "clip bounds " + shape_text(want) + " (same group size)",
                        shape_text(shape));
    const auto values = in.read<float>(d);
    out.clips.push_back(
        {role, Eigen::Map<const MatrixRM>(values.data(), want[0], want[1]), expert});
  };
  const bool moe = config.is_moe(layer);
  for (const SiteInfo& site : kSites)
    if (!moe || site.site != FoldSite::up)
      read_scales(site.site, -1, input_features(config, site.input));
  for (LinearRole role : all_linear_roles)
    read_clip(
        role, -1,
        clip_shape(linear_out_features(config, role), linear_in_features(config, role), spec));
  for (int e = 0; moe && e < config.moe.experts; ++e) {
    read_scales(FoldSite::up, e, config.moe.intermediate_size);
    for (LinearRole role : expert_roles) {
      const auto [rows, cols] = expert_shape(config, expert_linear(role));
      read_clip(role, e, clip_shape(rows, cols, spec));
    }
  }
  return out;
}

}  // namespace ptq
