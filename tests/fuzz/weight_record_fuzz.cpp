// read_weight on one record of quantized.h5 written from text, then dequantize.
// Uniform, NF4 and ggml records (pipeline/formats/weight_record.hpp). The input is not
// HDF5 bytes (mutating those mostly exercises libhdf5) but the record's
// contents as text, written with ptq's HDF5 writer, so every file the reader
// sees is a valid HDF5 file whose datasets and attributes are arbitrary:
//   dataset <name> <u8|i32|i64|f32|f64> <dims, e.g. 4x64>: <values>
//   attr <name> <int|float> <value>
//   attr <name> string <text to the end of the line>
// Datasets go under the group "w", attributes on it; missing values are 0.
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include "fuzz_util.hpp"
#include "io/hdf5.hpp"
#include "pipeline/formats/weight_record.hpp"

namespace {

constexpr std::int64_t kMaxElements = 1 << 20;  // bounds the file, not the reader
constexpr int kMaxRank = 4;

// A value as T; integers saturate (a cast out of range would be undefined).
template <class T>
T to(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isfinite(v) && std::abs(v) > std::numeric_limits<T>::max())
      return static_cast<T>(std::copysign(std::numeric_limits<double>::infinity(), v));
    return static_cast<T>(v);
  } else {
    if (std::isnan(v)) return 0;
    if (v <= static_cast<double>(std::numeric_limits<T>::lowest()))
      return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max()))
      return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

template <class T>
void write_values(ptq::H5Writer& out, const std::string& name, std::istream& values,
                  const std::vector<std::int64_t>& shape, std::int64_t count) {
  std::vector<T> data(static_cast<std::size_t>(count));
  std::string token;
  for (std::size_t i = 0; i < data.size() && values >> token; ++i)
    data[i] = to<T>(std::strtod(token.c_str(), nullptr));
  out.write<T>("w/" + name, data, shape);
}

// "4x64" -> {4, 64}; nullopt for a malformed or too large shape.
std::optional<std::vector<std::int64_t>> parse_dims(const std::string& text, std::int64_t& count) {
  std::vector<std::int64_t> dims;
  count = 1;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, 'x');) {
    std::int64_t d = 0;
    const auto [end, err] = std::from_chars(part.data(), part.data() + part.size(), d);
    if (err != std::errc() || end != part.data() + part.size() || d < 0 || d > kMaxElements)
      return std::nullopt;
    count *= d;
    if (count > kMaxElements || static_cast<int>(dims.size()) == kMaxRank) return std::nullopt;
    dims.push_back(d);
  }
  if (dims.empty()) return std::nullopt;
  return dims;
}

// One "dataset" line; false when it is malformed.
bool write_dataset(ptq::H5Writer& out, std::istringstream& line) {
  std::string name, type, dims_text;
  line >> name >> type >> dims_text;
  if (!dims_text.ends_with(':')) return false;
  dims_text.pop_back();
  std::int64_t count = 0;
  const auto dims = parse_dims(dims_text, count);
  if (!dims || name.empty()) return false;
  if (type == "u8")
    write_values<std::uint8_t>(out, name, line, *dims, count);
  else if (type == "i32")
    write_values<std::int32_t>(out, name, line, *dims, count);
  else if (type == "i64")
    write_values<std::int64_t>(out, name, line, *dims, count);
  else if (type == "f32")
    write_values<float>(out, name, line, *dims, count);
  else if (type == "f64")
    write_values<double>(out, name, line, *dims, count);
  else
    return false;
  return true;
}

// One "attr" line; false when it is malformed.
bool write_attribute(ptq::H5Writer& out, std::istringstream& line) {
  std::string name, kind;
  line >> name >> kind;
  if (name.empty()) return false;
  if (kind == "string") {
    std::string text;
    line.get();  // the space before the text
    std::getline(line, text);
    out.set_attribute("w", name, text);
  } else if (kind == "int") {
    std::string token;
    line >> token;
    out.set_attribute("w", name,
                      static_cast<std::int64_t>(std::strtoll(token.c_str(), nullptr, 10)));
  } else if (kind == "float") {
    std::string token;
    line >> token;
    out.set_attribute("w", name, std::strtod(token.c_str(), nullptr));
  } else {
    return false;
  }
  return true;
}

// The record file for `text`; false when the text does not describe one.
bool write_record(const std::filesystem::path& path, std::string_view text) {
  ptq::H5Writer out(path);
  std::istringstream lines{std::string(text)};
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    const bool ok = kind == "dataset" ? write_dataset(out, fields)
                    : kind == "attr"  ? write_attribute(out, fields)
                                      : kind.empty() || kind.starts_with('#');
    if (!ok) return false;
  }
  out.commit();
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::scratch_dir() / "record.h5";
  bool written = false;
  // The writer refusing a name (a dataset twice, a group where a dataset is) ends the input.
  fuzz::refuse_cleanly([&] { written = write_record(path, fuzz::as_text(data, size)); });
  if (!written) return 0;
  fuzz::refuse_cleanly([&] { dequantize(read_weight(H5Reader(path), "w")); });
  return 0;
}
