#include "io/text_file.hpp"

#include <fstream>
#include <iterator>

#include "io/error.hpp"
#include "io/output_path.hpp"

namespace ptq {

void write_text_atomic(const std::filesystem::path& path, std::string_view text) {
  OutputFile file(path, "");
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw input_error(path.string(), "a writable file", "a write error (disk full?)");
  }
  file.commit();
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error(path.string(), "a readable text file", "cannot open");
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace ptq
