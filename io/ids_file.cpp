#include "io/ids_file.hpp"

#include <bit>
#include <fstream>

#include "io/error.hpp"
#include "io/output_path.hpp"

namespace ptq {

static_assert(std::endian::native == std::endian::little, ".ids files are little-endian int32");

std::vector<std::int32_t> read_ids(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw input_error(path.string(), "a readable .ids file", ec.message());
  if (size % sizeof(std::int32_t) != 0) {
    throw input_error(path.string(), "a size that is a multiple of 4 (int32 ids)",
                      std::to_string(size) + " bytes");
  }
  std::vector<std::int32_t> ids(size / sizeof(std::int32_t));
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(ids.data()), static_cast<std::streamsize>(size))) {
    throw input_error(path.string(), std::to_string(size) + " readable bytes", "a read error");
  }
  return ids;
}

void write_ids(const std::filesystem::path& path, std::span<const std::int32_t> ids) {
  OutputFile file(path, "");
  {
    std::ofstream out(file.temp_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(ids.data()),
              static_cast<std::streamsize>(ids.size_bytes()));
    out.close();
    if (!out) throw input_error(path.string(), "a writable location", "a write error");
  }
  file.commit();
}

}  // namespace ptq
