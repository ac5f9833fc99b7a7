#include "io/text_file.hpp"

#include <fstream>

#include "io/error.hpp"

namespace ptq {

void write_text_atomic(const std::filesystem::path& path, std::string_view text) {
  std::filesystem::path temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::binary);
    out << text;
    if (!out.flush()) {
      out.close();
      std::filesystem::remove(temp);
      throw input_error(temp.string(), "a writable file", "a write error (disk full?)");
    }
  }
  std::filesystem::rename(temp, path);
}

}  // namespace ptq
