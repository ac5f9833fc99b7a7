#include "pipeline/report/svg_plots.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace ptq {

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr double kWidth = 640, kHeight = 360, kLeft = 84, kRight = 20, kTop = 36, kBottom = 48;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string text_at(double x, double y, const std::string& s, const char* anchor = "middle",
                    const char* extra = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\" " + extra +
         ">" + escape_xml(s) + "</text>";
}

std::string line(double x1, double y1, double x2, double y2, const char* style) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) +
         "\" style=\"" + style + "\"/>";
}

std::string open_svg(const std::string& title, double height) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"" + num(kWidth) +
         "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) +
         "\" role=\"img\" aria-label=\"" + escape_xml(title) + "\">" +
         text_at(kWidth / 2, 20, title, "middle", "font-weight=\"bold\"");
}

// Maps [lo, hi] onto [a, b], widened so that a single value still has a range.
struct Axis {
  double lo, hi, a, b;
  bool log = false;
  double operator()(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v - lo) / (hi - lo);
    return a + t * (b - a);
  }
};

Axis axis(std::vector<double> values, double a, double b, bool log) {
  double lo = *std::min_element(values.begin(), values.end());
  double hi = *std::max_element(values.begin(), values.end());
  if (log) {
    lo = std::max(lo, 1e-12);
    if (hi <= lo) hi = lo * 10;
    return {lo / 1.3, hi * 1.3, a, b, true};
  }
  const double pad = hi > lo ? 0.08 * (hi - lo) : std::max(std::abs(lo) * 0.1, 1.0);
  return {lo - pad, hi + pad, a, b, false};
}

std::string axes(const Axis& x, const Axis& y, const std::string& x_label, const std::string& y_label) {
  std::string s = line(kLeft, kHeight - kBottom, kWidth - kRight, kHeight - kBottom, "stroke:#333") +
                  line(kLeft, kTop, kLeft, kHeight - kBottom, "stroke:#333");
  for (int i = 0; i <= 4; ++i) {
    const double vx = x.lo + (x.hi - x.lo) * i / 4;
    s += text_at(x(vx), kHeight - kBottom + 16, tick(vx));
    const double vy = y.log ? std::pow(10.0, std::log10(y.lo) + (std::log10(y.hi) - std::log10(y.lo)) * i / 4)
                            : y.lo + (y.hi - y.lo) * i / 4;
    s += text_at(kLeft - 6, y(vy) + 4, tick(vy), "end");
  }
  s += text_at((kLeft + kWidth - kRight) / 2, kHeight - 10, x_label);
  s += text_at(16, (kTop + kHeight - kBottom) / 2, y_label, "middle",
               ("transform=\"rotate(-90 16 " + num((kTop + kHeight - kBottom) / 2) + ")\"").c_str());
  return s;
}

// Indices of the points no other point beats on both x and y, by x.
std::vector<std::size_t> pareto_front(const std::vector<PlotPoint>& p) {
  std::vector<std::size_t> order(p.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return p[a].x != p[b].x ? p[a].x < p[b].x : p[a].y < p[b].y;
  });
  std::vector<std::size_t> front;
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t i : order)
    if (p[i].y < best) {
      front.push_back(i);
      best = p[i].y;
    }
  return front;
}

}  // namespace

std::string scatter_svg(const std::string& title, const std::string& x_label,
                        const std::string& y_label, const std::vector<PlotPoint>& points, bool log_y) {
  if (points.empty()) return "";
  std::vector<double> xs, ys;
  for (const PlotPoint& p : points) {
    xs.push_back(p.x);
    ys.push_back(p.y);
  }
  const Axis x = axis(xs, kLeft, kWidth - kRight, false);
  const Axis y = axis(ys, kHeight - kBottom, kTop, log_y);
  std::string s = open_svg(title, kHeight) + axes(x, y, x_label, y_label);
  std::string front = "<polyline class=\"pareto\" fill=\"none\" style=\"stroke:#c33;stroke-width:2\" points=\"";
  for (std::size_t i : pareto_front(points)) front += num(x(points[i].x)) + "," + num(y(points[i].y)) + " ";
  s += front + "\"/>";
  for (const PlotPoint& p : points) {
    s += "<circle cx=\"" + num(x(p.x)) + "\" cy=\"" + num(y(p.y)) + "\" r=\"4\" fill=\"#36c\"><title>" +
         escape_xml(p.label + ": " + tick(p.x) + ", " + tick(p.y)) + "</title></circle>";
    s += text_at(x(p.x) + 6, y(p.y) - 6, p.label, "start", "font-size=\"11\"");
  }
  return s + text_at(kWidth - kRight, kTop - 4, "red: Pareto front", "end", "font-size=\"11\" fill=\"#c33\"") +
         "</svg>";
}

std::string curve_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<PlotSeries>& series) {
  static constexpr const char* kColours[] = {"#36c", "#c33", "#393", "#939", "#c93"};
  std::vector<double> xs, ys;
  for (const PlotSeries& s : series)
    for (const PlotPoint& p : s.points) {
      xs.push_back(p.x);
      ys.push_back(p.y);
    }
  if (xs.empty()) return "";
  const Axis x = axis(xs, kLeft, kWidth - kRight, false);
  const Axis y = axis(ys, kHeight - kBottom, kTop, false);
  std::string svg = open_svg(title, kHeight) + axes(x, y, x_label, y_label);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const std::string colour = kColours[i % std::size(kColours)];
    std::vector<PlotPoint> points = series[i].points;
    std::sort(points.begin(), points.end(), [](const PlotPoint& a, const PlotPoint& b) { return a.x < b.x; });
    std::string line = "<polyline class=\"series\" fill=\"none\" style=\"stroke:" + colour + ";stroke-width:2\" points=\"";
    for (const PlotPoint& p : points) line += num(x(p.x)) + "," + num(y(p.y)) + " ";
    svg += line + "\"/>";
    for (const PlotPoint& p : points)
      svg += "<circle cx=\"" + num(x(p.x)) + "\" cy=\"" + num(y(p.y)) + "\" r=\"4\" fill=\"" + colour +
             "\"><title>" + escape_xml(p.label + ": " + tick(p.y)) + "</title></circle>";
    svg += text_at(kWidth - kRight, kTop + 14.0 * static_cast<double>(i), series[i].name, "end",
                   ("font-size=\"11\" fill=\"" + colour + "\"").c_str());
  }
  return svg + "</svg>";
}

std::string interval_svg(const std::string& title, const std::string& x_label,
                         const std::vector<PlotInterval>& rows) {
  if (rows.empty()) return "";
  const double row_height = 22, height = kTop + kBottom + row_height * static_cast<double>(rows.size());
  std::vector<double> xs = {0};
  for (const PlotInterval& r : rows) xs.insert(xs.end(), {r.low, r.high, r.value});
  const double left = 150;
  const Axis x = axis(xs, left, kWidth - kRight, false);
  std::string s = open_svg(title, height);
  s += line(x(0), kTop, x(0), height - kBottom, "stroke:#999;stroke-dasharray:4");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const PlotInterval& r = rows[i];
    const double cy = kTop + row_height * (static_cast<double>(i) + 0.5);
    s += text_at(left - 8, cy + 4, r.label, "end");
    s += line(x(r.low), cy, x(r.high), cy, "stroke:#36c;stroke-width:2");
    s += "<circle cx=\"" + num(x(r.value)) + "\" cy=\"" + num(cy) + "\" r=\"4\" fill=\"#36c\"><title>" +
         escape_xml(r.label + ": " + tick(r.value) + " [" + tick(r.low) + ", " + tick(r.high) + "]") +
         "</title></circle>";
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = x.lo + (x.hi - x.lo) * i / 4;
    s += text_at(x(v), height - kBottom + 16, tick(v));
  }
  return s + text_at((left + kWidth - kRight) / 2, height - 10, x_label) + "</svg>";
}

std::string heatmap_svg(const std::string& title, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& column_labels,
                        const std::vector<std::vector<double>>& values) {
  if (row_labels.empty() || column_labels.empty()) return "";
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const auto& row : values)
    for (double v : row)
      if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
  const double left = 150, cell_w = std::max(6.0, (kWidth - left - kRight) / static_cast<double>(column_labels.size()));
  const double cell_h = 18, height = kTop + 60 + cell_h * static_cast<double>(row_labels.size());
  std::string s = open_svg(title, height);
  for (std::size_t r = 0; r < row_labels.size(); ++r) {
    const double y = kTop + cell_h * static_cast<double>(r);
    s += text_at(left - 6, y + 13, row_labels[r], "end", "font-size=\"11\"");
    for (std::size_t c = 0; c < column_labels.size() && c < values[r].size(); ++c) {
      const double v = values[r][c];
      if (!(v > 0)) continue;
      const double t = hi > lo ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : 0.5;
      const int shade = static_cast<int>(235 - 200 * t);
      s += "<rect x=\"" + num(left + cell_w * static_cast<double>(c)) + "\" y=\"" + num(y) + "\" width=\"" +
           num(cell_w) + "\" height=\"" + num(cell_h - 1) + "\" fill=\"rgb(" + std::to_string(shade) + "," +
           std::to_string(shade) + ",255)\"><title>" +
           escape_xml(row_labels[r] + " " + column_labels[c] + ": " + tick(v)) + "</title></rect>";
    }
  }
  const double legend_y = kTop + cell_h * static_cast<double>(row_labels.size()) + 20;
  s += text_at(left, legend_y, "columns: " + column_labels.front() + " ... " + column_labels.back() +
               "; light " + tick(lo) + ", dark " + tick(hi) + " (log scale)", "start", "font-size=\"11\"");
  return s + "</svg>";
}

}  // namespace ptq
