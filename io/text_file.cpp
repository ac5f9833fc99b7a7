#include "io/text_file.hpp"

#include <fstream>

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

}  // namespace ptq
