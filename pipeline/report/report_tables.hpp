#pragma once
// The report's tables as text cells, built once for report.md and
// report.html alike: a value that does not apply says why ("n/a: not GGUF").
#include <string>
#include <vector>

#include "pipeline/report/report.hpp"

namespace ptq {

struct ReportTable {
  std::string title;
  std::string note;  // what the columns mean, under the title
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
};

std::vector<ReportTable> report_tables(const Report& report);

// "%.*f" of a value.
std::string fixed(double value, int decimals);

}  // namespace ptq
