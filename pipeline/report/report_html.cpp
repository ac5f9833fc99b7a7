// report.html: one self-contained page (inline CSS and SVG, no script, nothing
// fetched): the plots first, then the same tables as report.md.
#include <algorithm>
#include <cctype>
#include <map>

#include "pipeline/report/report_tables.hpp"
#include "pipeline/report/svg_plots.hpp"

namespace ptq {
namespace {

constexpr const char* kStyle =
    "body{font-family:sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0 24px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child,td.text{text-align:left}"
    ".deploy{background:#d9f2d9}.consider{background:#fff3c4}.dont{background:#f7d4d4}"
    ".plots{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:90%}";

// Each text's perplexity against the sweep's axis, one line per series.
std::string sweep_plots(const Report& r) {
  const ReportConfig::Sweep& sweep = *r.config.sweep;
  std::string s;
  for (std::size_t t = 0; t < r.config.texts.size(); ++t) {
    std::vector<PlotSeries> series;
    for (std::size_t v = 0; v < r.variants.size(); ++v) {
      auto it = std::find_if(series.begin(), series.end(),
                             [&](const PlotSeries& p) { return p.name == sweep.series[v]; });
      if (it == series.end()) it = series.insert(series.end(), {sweep.series[v], {}});
      it->points.push_back({r.variants[v].input.name, sweep.x[v], r.variants[v].texts[t].ppl});
    }
    s += curve_svg("Perplexity on " + r.config.texts[t].name + " against the mix", sweep.label, "perplexity",
                   series);
  }
  return s;
}

std::string plots(const Report& r) {
  std::string s = "<h2>Plots</h2><div class=\"plots\">";
  if (r.config.sweep) s += sweep_plots(r);
  for (std::size_t t = 0; t < r.config.texts.size(); ++t) {
    std::vector<PlotPoint> ppl = {{r.baseline.input.name, r.baseline.bits_per_weight, r.baseline.texts[t].ppl}};
    std::vector<PlotPoint> kl;
    for (const VariantReport& v : r.variants) {
      ppl.push_back({v.input.name, v.bits_per_weight, v.texts[t].ppl});
      kl.push_back({v.input.name, v.bits_per_weight, *v.texts[t].kl_mean});
    }
    const std::string& name = r.config.texts[t].name;
    s += scatter_svg("Perplexity on " + name + " against size", "bits per weight", "perplexity", ppl, true);
    s += scatter_svg("Mean KL on " + name + " against size", "bits per weight", "KL (nats)", kl, true);
  }
  for (std::size_t t = 0; t < r.baseline.tasks.size(); ++t) {
    std::vector<PlotInterval> rows;
    for (const VariantReport& v : r.variants) {
      const PairedChange& c = *v.tasks[t].acc_change;
      rows.push_back({v.input.name, c.points, c.low, c.high});
    }
    s += interval_svg("Accuracy change on " + r.baseline.tasks[t].task + " (95 % interval)",
                      "accuracy points against the baseline", rows);
  }
  return s + "</div>";
}

// Per-Linear weight error from each variant's quantized.h5, one row per
// variant, columns in the order the records list them (layer by layer).
std::string layer_heatmap(const Report& r) {
  std::map<std::string, std::size_t> column_of;
  std::vector<std::string> labels, rows;
  const auto label = [](const LayerError& l) { return std::to_string(l.layer) + "." + l.linear; };
  for (const VariantReport& v : r.variants)
    for (const LayerError& l : v.layers)
      if (column_of.emplace(label(l), labels.size()).second) labels.push_back(label(l));
  if (labels.empty()) return "";
  std::vector<std::vector<double>> values;
  for (const VariantReport& v : r.variants) {
    if (v.layers.empty()) continue;
    rows.push_back(v.input.name);
    values.emplace_back(labels.size(), 0.0);
    for (const LayerError& l : v.layers) values.back()[column_of[label(l)]] = l.weight_mse;
  }
  return "<h2>Per-layer weight error</h2><p class=\"note\">Mean squared weight error of each block "
         "Linear (layer.linear), from the variants' quantized.h5 records.</p>" +
         heatmap_svg("Weight MSE per Linear", rows, labels, values);
}

// A verdict's colour; words left-aligned, numbers right.
std::string cell_class(const std::string& cell) {
  if (cell == "deploy") return " class=\"deploy\"";
  if (cell == "consider") return " class=\"consider\"";
  if (cell == "don't") return " class=\"dont\"";
  const bool number = !cell.empty() && (std::isdigit(static_cast<unsigned char>(cell[0])) ||
                                        cell[0] == '+' || cell[0] == '-');
  return number ? "" : " class=\"text\"";
}

std::string table_html(const ReportTable& t) {
  std::string s = "<h2>" + escape_xml(t.title) + "</h2><p class=\"note\">" + escape_xml(t.note) + "</p><table><tr>";
  for (const std::string& h : t.headers) s += "<th>" + escape_xml(h) + "</th>";
  s += "</tr>";
  for (const auto& row : t.rows) {
    s += "<tr>";
    for (const std::string& c : row) s += "<td" + cell_class(c) + ">" + escape_xml(c) + "</td>";
    s += "</tr>";
  }
  return s + "</table>";
}

}  // namespace

std::string report_html(const Report& r) {
  const std::string title = "ptq report: " + r.baseline.input.name + " and " +
                            std::to_string(r.variants.size()) + " variants";
  std::string s = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape_xml(title) +
                  "</title><style>" + kStyle + "</style></head><body><h1>" + escape_xml(title) + "</h1>";
  const std::vector<ReportTable> tables = report_tables(r);
  s += table_html(tables.front());  // the recommendations first
  s += plots(r) + layer_heatmap(r);
  for (std::size_t i = 1; i < tables.size(); ++i) s += table_html(tables[i]);
  return s + "</body></html>\n";
}

}  // namespace ptq
