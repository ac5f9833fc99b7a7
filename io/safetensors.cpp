// Reading one .safetensors file: mmap, then validate every header field that a
// truncated or hostile file can get wrong before any TensorView is handed out.
#include "io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/mapped_file.hpp"

namespace ptq {

namespace {

using json = nlohmann::ordered_json;

constexpr std::size_t kLengthPrefixBytes = 8;  // u64 little-endian header length
constexpr const char* kMetadataKey = "__metadata__";

std::string tensor_where(const std::filesystem::path& file, const std::string& name) {
  return file.string() + ": tensor \"" + name + "\"";
}

std::uint64_t read_header_length(const std::byte* map, std::size_t file_size,
                                 const std::filesystem::path& path) {
  if (file_size < kLengthPrefixBytes) {
    throw input_error(path.string(), "at least 8 bytes (the header length)",
                      std::to_string(file_size) + " bytes");
  }
  std::uint64_t length = 0;
  std::memcpy(&length, map, sizeof length);  // little-endian host (dtype.cpp)
  const std::uint64_t available = file_size - kLengthPrefixBytes;
  if (length > available) {
    throw input_error(path.string(),
                      "header length at most " + std::to_string(available) + " (file size - 8)",
                      "header length " + std::to_string(length));
  }
  return length;
}

std::map<std::string, std::string> parse_metadata(const json& value,
                                                  const std::filesystem::path& path) {
  const std::string where = path.string() + ": " + kMetadataKey;
  if (!value.is_object()) throw input_error(where, "an object of strings", describe_json(value));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, entry] : value.items()) {
    if (!entry.is_string()) {
      throw input_error(where + " key \"" + key + "\"", "a string value", describe_json(entry));
    }
    metadata.emplace(key, entry.get<std::string>());
  }
  return metadata;
}

const json& require_field(const json& entry, const char* field, const std::string& where) {
  auto it = entry.find(field);
  if (it == entry.end()) throw input_error(where, std::string("field \"") + field + "\"", "none");
  return *it;
}

DType parse_tensor_dtype(const json& value, const std::string& where) {
  if (!value.is_string()) throw input_error(where + " dtype", "a string", describe_json(value));
  const auto text = value.get<std::string>();
  if (auto dtype = parse_dtype(text)) return *dtype;
  throw input_error(where + " dtype", "one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL",
                    describe_json(value));
}

// Shape dimensions and the byte count they imply, with every product overflow-checked.
std::vector<std::int64_t> parse_shape(const json& value, DType dtype, const std::string& where,
                                      std::uint64_t& byte_count) {
  if (!value.is_array())
    throw input_error(where + " shape", "an array of integers", describe_json(value));
  std::vector<std::int64_t> shape;
  std::uint64_t count = dtype_size(dtype);
  std::int64_t elements = 1;  // numel()'s product, in its order: [2^62, 2, 0] overflows it
  for (const auto& dim : value) {
    if (!dim.is_number_unsigned()) {
      throw input_error(where + " shape", "non-negative integer dimensions", describe_json(dim));
    }
    const auto d = dim.get<std::uint64_t>();
    if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        __builtin_mul_overflow(count, d, &count) ||
        __builtin_mul_overflow(elements, static_cast<std::int64_t>(d), &elements)) {
      throw input_error(where + " shape", "an element count and byte size that fit in 64 bits",
                        describe_json(value));
    }
    shape.push_back(static_cast<std::int64_t>(d));
  }
  byte_count = count;
  return shape;
}

std::pair<std::uint64_t, std::uint64_t> parse_offsets(const json& value, const std::string& where,
                                                      std::uint64_t data_size) {
  const std::string what = where + " data_offsets";
  if (!value.is_array() || value.size() != 2 || !value[0].is_number_unsigned() ||
      !value[1].is_number_unsigned()) {
    throw input_error(what, "[begin, end] as two non-negative integers", describe_json(value));
  }
  const auto begin = value[0].get<std::uint64_t>();
  const auto end = value[1].get<std::uint64_t>();
  if (begin > end) throw input_error(what, "begin <= end", value.dump());
  if (end > data_size) {
    throw input_error(what, "end <= " + std::to_string(data_size) + " (bytes after the header)",
                      value.dump());
  }
  return {begin, end};
}

TensorView parse_tensor(const std::string& name, const json& entry,
                        const std::filesystem::path& path, const std::byte* data,
                        std::uint64_t data_size) {
  const std::string where = tensor_where(path, name);
  if (!entry.is_object())
    throw input_error(where, "an object {dtype, shape, data_offsets}", describe_json(entry));
  const DType dtype = parse_tensor_dtype(require_field(entry, "dtype", where), where);
  std::uint64_t expected_bytes = 0;
  auto shape = parse_shape(require_field(entry, "shape", where), dtype, where, expected_bytes);
  const auto [begin, end] =
      parse_offsets(require_field(entry, "data_offsets", where), where, data_size);
  if (end - begin != expected_bytes) {
    throw input_error(
        where,
        std::to_string(expected_bytes) + " bytes (" + std::string(dtype_name(dtype)) + " x shape)",
        std::to_string(end - begin) + " bytes in data_offsets");
  }
  return TensorView{name, dtype, std::move(shape),
                    std::span<const std::byte>(data + begin, static_cast<std::size_t>(end - begin)),
                    path};
}

void check_no_overlap(const std::vector<TensorView>& tensors, const std::filesystem::path& path) {
  std::vector<const TensorView*> by_offset;
  for (const auto& t : tensors) {
    if (!t.bytes.empty()) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorView* a, const TensorView* b) {
    return a->bytes.data() < b->bytes.data();
  });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    const auto* cur = by_offset[i];
    if (cur->bytes.data() < prev->bytes.data() + prev->bytes.size()) {
      throw input_error(tensor_where(path, cur->name), "data not overlapping other tensors",
                        "an overlap with tensor \"" + prev->name + "\"");
    }
  }
}

}  // namespace

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;  // cannot overflow: parse_shape checked this product
  return n;
}

std::vector<float> TensorView::to_float() const {
  std::vector<float> out(static_cast<std::size_t>(numel()));
  convert_to_float(dtype, bytes.data(), out.size(), out.data(), tensor_where(file, name));
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const std::span<const std::byte> map = map_file(path);
  file->map_ = map.data();
  file->map_size_ = map.size();

  const std::uint64_t header_length = read_header_length(file->map_, file->map_size_, path);
  const std::string_view header_text(reinterpret_cast<const char*>(file->map_ + kLengthPrefixBytes),
                                     static_cast<std::size_t>(header_length));
  const json header = parse_json_strict(header_text, path.string() + ": header");
  if (!header.is_object())
    throw input_error(path.string() + ": header", "a JSON object", describe_json(header));

  const std::byte* data = file->map_ + kLengthPrefixBytes + header_length;
  const std::uint64_t data_size = file->map_size_ - kLengthPrefixBytes - header_length;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      file->metadata_ = parse_metadata(entry, path);
      continue;
    }
    file->index_.emplace(name, file->tensors_.size());
    file->tensors_.push_back(parse_tensor(name, entry, path, data, data_size));
  }
  check_no_overlap(file->tensors_, path);
  return file;
}

SafetensorsFile::~SafetensorsFile() { unmap_file({map_, map_size_}); }

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ptq
