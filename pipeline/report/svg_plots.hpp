#pragma once
// Inline SVG charts for report.html, drawn from the numbers alone (no script,
// no external file): a scatter with its Pareto front, intervals per variant,
// and a heatmap.
#include <string>
#include <vector>

namespace ptq {

struct PlotPoint {
  std::string label;
  double x = 0, y = 0;
};

// Points of y against x; the front (lowest y for at most that x) is joined by
// a line. Axes start at the data's range; y on a log scale when log_y.
std::string scatter_svg(const std::string& title, const std::string& x_label,
                        const std::string& y_label, const std::vector<PlotPoint>& points, bool log_y);

struct PlotSeries {
  std::string name;
  std::vector<PlotPoint> points;
};

// Each series' points joined in x order, in a colour of its own, with a legend.
std::string curve_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<PlotSeries>& series);

struct PlotInterval {
  std::string label;
  double value = 0, low = 0, high = 0;
};

// One row per interval: a dot at value, a bar from low to high, a line at 0.
std::string interval_svg(const std::string& title, const std::string& x_label,
                         const std::vector<PlotInterval>& rows);

// values[row][column] coloured on a log scale (light = small, dark = large);
// a non-positive value is left blank.
std::string heatmap_svg(const std::string& title, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& column_labels,
                        const std::vector<std::vector<double>>& values);

// Text with &, <, > and " escaped for HTML and SVG.
std::string escape_xml(const std::string& text);

}  // namespace ptq
