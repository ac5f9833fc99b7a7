#include "io/ids_file.hpp"

#include <algorithm>
#include <bit>
#include <fstream>

#include "io/error.hpp"
#include "io/file_writer.hpp"
#include "io/input_file.hpp"
#include "io/output_path.hpp"

namespace ptq {

static_assert(std::endian::native == std::endian::little, ".ids files are little-endian int32");

std::vector<std::int32_t> read_ids(const std::filesystem::path& path) {
  std::ifstream in = open_input_file(path, "a readable .ids file");
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw input_error(path.string(), "a readable .ids file", ec.message());
  if (size % sizeof(std::int32_t) != 0) {
    throw input_error(path.string(), "a size that is a multiple of 4 (int32 ids)",
                      std::to_string(size) + " bytes");
  }
  std::vector<std::int32_t> ids(size / sizeof(std::int32_t));
  if (!in.read(reinterpret_cast<char*>(ids.data()), static_cast<std::streamsize>(size))) {
    throw input_error(path.string(), std::to_string(size) + " readable bytes", "a read error");
  }
  return ids;
}

std::vector<std::int32_t> read_ids(const std::filesystem::path& path, std::int32_t vocab_size) {
  std::vector<std::int32_t> ids = read_ids(path);
  const auto bad = std::find_if(ids.begin(), ids.end(),
                                [&](std::int32_t id) { return id < 0 || id >= vocab_size; });
  if (bad != ids.end())
    throw input_error(path.string() + ": token " + std::to_string(bad - ids.begin()),
                      "an id in [0, " + std::to_string(vocab_size) + ") (the model's vocab_size)",
                      std::to_string(*bad));
  return ids;
}

void write_ids(const std::filesystem::path& path, std::span<const std::int32_t> ids) {
  OutputFile file(path, "");
  FileWriter out(file.temp_path());
  out.write_all(ids.data(), ids.size_bytes());
  out.sync_and_close();
  file.commit();
}

}  // namespace ptq
