#include "pipeline/report/report_tables.hpp"

namespace ptq {
namespace {

// " text |" for a Markdown row: a bare '|' in the text is escaped.
void append_cell(std::string& md, const std::string& text) {
  md.push_back(' ');
  for (char c : text) {
    if (c == '|') md.push_back('\\');
    md.push_back(c);
  }
  md.append(" |");
}

}  // namespace

std::string report_markdown(const Report& r) {
  std::string md = "# ptq report: " + r.baseline.input.name + " and " +
                   std::to_string(r.variants.size()) + " variants\n";
  for (const ReportTable& t : report_tables(r)) {
    md += "\n## " + t.title + "\n\n" + t.note + "\n\n|";
    for (const std::string& h : t.headers) append_cell(md, h);
    md += "\n|";
    for (std::size_t i = 0; i < t.headers.size(); ++i) md += i == 0 ? "---|" : "---:|";
    md += "\n";
    for (const auto& row : t.rows) {
      md += "|";
      for (const std::string& c : row) append_cell(md, c);
      md += "\n";
    }
  }
  return md;
}

}  // namespace ptq
