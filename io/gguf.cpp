// GGUF reading (mmap, then every count, length, type, shape and offset checked
// against the file before anything is allocated or handed out) and writing in
// the exact layout of llama.cpp's gguf writer. Format summary in gguf.hpp.
#include "io/gguf.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>

#include "io/dtype.hpp"
#include "io/error.hpp"
#include "io/file_writer.hpp"
#include "io/mapped_file.hpp"
#include "io/output_path.hpp"

namespace ptq::gguf {

namespace {

using Data = decltype(Value::data);
// The variant's alternatives follow the ValueType ids, so index == id everywhere below.
static_assert(std::is_same_v<std::variant_alternative_t<7, Data>, bool>);
static_assert(std::is_same_v<std::variant_alternative_t<9, Data>, Array>);
static_assert(std::is_same_v<std::variant_alternative_t<12, Data>, double>);

constexpr std::array<char, 4> kMagic = {'G', 'G', 'U', 'F'};
constexpr std::uint32_t kWriteVersion = 3;
constexpr std::uint32_t kOldestVersion = 2;  // v2 has v3's layout (v3 added big-endian files)
constexpr std::uint64_t kDefaultAlignment = 32;
constexpr std::string_view kAlignmentKey = "general.alignment";
constexpr std::uint32_t kMaxDims = 4;      // GGML_MAX_DIMS
constexpr std::size_t kMaxNameBytes = 63;  // GGML_MAX_NAME - 1: llama.cpp refuses longer names
constexpr int kMaxArrayDepth = 16;         // bounds the reader's recursion on nested arrays

// Smallest encodings, to bound counts by the bytes left before allocating anything.
constexpr std::uint64_t kMinKvBytes = 8 + 1 + 4 + 1;  // key length, 1-byte key, type, u8 value
// Tensor info: name length, 1-byte name, n_dims, one ne, type, offset.
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

constexpr std::string_view kValueTypeNames[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
constexpr std::uint32_t kValueTypeCount = std::size(kValueTypeNames);
// Encoded bytes of each value type; for string and array, their length prefix alone.
constexpr std::uint64_t kMinValueBytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 4 + 8, 8, 8, 8};

// ggml.h enum ggml_type with ggml's block size (weights per block) and type size
// (bytes per block); ids 4, 5 and 31-33, 36-38 are retired in ggml.
constexpr TensorTypeInfo kTensorTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

std::uint64_t align_up(std::uint64_t n, std::uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;  // callers keep n far below 2^64
}

std::string in_quotes(std::string_view text) {
  std::string out(1, '"');  // appended, not `"\"" + ... + "\""`: GCC 12 -Wrestrict false positive
  out.append(text);
  out.push_back('"');
  return out;
}

// Bytes of a shape, or nullopt when the element count or the byte count overflows.
std::optional<std::uint64_t> checked_bytes(const TensorTypeInfo& type,
                                           std::span<const std::int64_t> ne) {
  std::int64_t numel = 1;
  for (const auto d : ne) {
    if (__builtin_mul_overflow(numel, d, &numel)) return std::nullopt;
  }
  std::uint64_t bytes = 0;
  const auto blocks = static_cast<std::uint64_t>(numel / type.block_size);
  if (__builtin_mul_overflow(blocks, static_cast<std::uint64_t>(type.type_size), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

// "f32 1.5", "string \"llama\"", "array of 3 string": a value as error messages show it.
std::string describe(const Value& value) {
  const std::string type(value_type_name(value.type));
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return type + " " + in_quotes(x.size() > 40 ? x.substr(0, 40) + "..." : x);
        } else if constexpr (std::is_same_v<T, Array>) {
          return "array of " + std::to_string(x.items.size()) + " " +
                 std::string(value_type_name(x.element_type));
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "bool true" : "bool false";
        } else {
          return type + " " + std::to_string(x);
        }
      },
      value.data);
}

// ---------------------------------------------------------------- reading

// Bounds-checked little-endian reads from the mapped file. Errors name the file,
// the thing being read (`subject`: the header, a key, a tensor) and the offset.
class Cursor {
 public:
  Cursor(const std::byte* data, std::uint64_t size, const std::filesystem::path& path)
      : data_(data), size_(size), path_(path) {}

  std::uint64_t pos() const { return pos_; }
  std::uint64_t left() const { return size_ - pos_; }
  void set_subject(std::string subject) { subject_ = std::move(subject); }
  std::string where(std::string_view part) const {
    return path_.string() + ": " + subject_ + (part.empty() ? "" : " " + std::string(part));
  }

  template <typename T>
  T read(std::string_view part) {
    need(sizeof(T), part);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof value);  // little-endian host (dtype.cpp)
    pos_ += sizeof value;
    return value;
  }

  std::string read_string(std::string_view part) {
    const auto length = read<std::uint64_t>(std::string(part) + " length");
    if (length > left()) {
      throw input_error(where(std::string(part) + " length"),
                        "at most " + std::to_string(left()) + " (the bytes left in the file)",
                        std::to_string(length));
    }
    std::string text(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return text;
  }

 private:
  void need(std::uint64_t bytes, std::string_view part) const {
    if (bytes > left()) {
      throw input_error(where(part),
                        std::to_string(bytes) + " bytes at offset " + std::to_string(pos_),
                        "the file ending after " + std::to_string(left()) + " (truncated)");
    }
  }

  const std::byte* data_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  const std::filesystem::path& path_;
  std::string subject_ = "header";
};

ValueType read_value_type(Cursor& in, std::string_view part) {
  const auto id = in.read<std::uint32_t>(part);
  if (id >= kValueTypeCount) {
    throw input_error(in.where(part), "a GGUF value type id 0-12", std::to_string(id));
  }
  return static_cast<ValueType>(id);
}

Array read_array(Cursor& in, int depth);

Value read_value(Cursor& in, ValueType type, int depth) {
  Value value;
  value.type = type;
  // One line per type: the switch reads as the table it is.
  switch (type) {
    // clang-format off
    case ValueType::u8: value.data = in.read<std::uint8_t>("value"); break;
    case ValueType::i8: value.data = in.read<std::int8_t>("value"); break;
    case ValueType::u16: value.data = in.read<std::uint16_t>("value"); break;
    case ValueType::i16: value.data = in.read<std::int16_t>("value"); break;
    case ValueType::u32: value.data = in.read<std::uint32_t>("value"); break;
    case ValueType::i32: value.data = in.read<std::int32_t>("value"); break;
    case ValueType::f32: value.data = in.read<float>("value"); break;
    case ValueType::u64: value.data = in.read<std::uint64_t>("value"); break;
    case ValueType::i64: value.data = in.read<std::int64_t>("value"); break;
    case ValueType::f64: value.data = in.read<double>("value"); break;
    case ValueType::string: value.data = in.read_string("string"); break;
    case ValueType::array: value.data = read_array(in, depth + 1); break;
    // clang-format on
    case ValueType::boolean: {
      const auto byte = in.read<std::uint8_t>("value");
      // Anything but 0/1 would not survive a rewrite byte for byte.
      if (byte > 1) throw input_error(in.where("bool"), "0 or 1", std::to_string(byte));
      value.data = byte == 1;
      break;
    }
  }
  return value;
}

Array read_array(Cursor& in, int depth) {
  if (depth > kMaxArrayDepth) {
    throw input_error(in.where("array"),
                      "arrays nested at most " + std::to_string(kMaxArrayDepth) + " deep",
                      "deeper nesting");
  }
  Array array;
  array.element_type = read_value_type(in, "array element type");
  const auto count = in.read<std::uint64_t>("array length");
  const std::uint64_t most = in.left() / kMinValueBytes[static_cast<int>(array.element_type)];
  if (count > most) {
    throw input_error(in.where("array length"),
                      "at most " + std::to_string(most) + " " +
                          std::string(value_type_name(array.element_type)) +
                          " elements (the bytes left in the file)",
                      std::to_string(count));
  }
  array.items.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    array.items.push_back(read_value(in, array.element_type, depth));
  }
  return array;
}

std::uint64_t alignment_of(const Value* value, const std::string& where) {
  if (value == nullptr) return kDefaultAlignment;
  if (value->type != ValueType::u32) throw input_error(where, "a u32", describe(*value));
  const auto alignment = std::get<std::uint32_t>(value->data);
  if (!std::has_single_bit(alignment)) {
    throw input_error(where, "a power of two", std::to_string(alignment));
  }
  return alignment;
}

// One tensor info; `bytes` receives the data size its type and shape imply.
TensorInfo read_tensor_info(Cursor& in, std::uint64_t index, std::uint64_t alignment,
                            std::uint64_t& bytes) {
  in.set_subject("tensor info " + std::to_string(index));
  TensorInfo t;
  t.name = in.read_string("name");
  in.set_subject("tensor " + in_quotes(t.name));
  const auto n_dims = in.read<std::uint32_t>("n_dims");
  if (n_dims == 0 || n_dims > kMaxDims) {
    throw input_error(in.where("n_dims"), "1 to 4 dimensions", std::to_string(n_dims));
  }
  for (std::uint32_t d = 0; d < n_dims; ++d) {
    const auto ne = static_cast<std::int64_t>(in.read<std::uint64_t>("ne"));
    if (ne <= 0) {
      throw input_error(in.where("dimension " + std::to_string(d)), "at least 1 element",
                        std::to_string(ne));
    }
    t.ne.push_back(ne);
  }
  t.type = in.read<std::uint32_t>("type");
  const TensorTypeInfo* type = find_tensor_type(t.type);
  if (type == nullptr) {
    throw input_error(in.where("type"), "a ggml type id", std::to_string(t.type));
  }
  if (t.ne[0] % type->block_size != 0) {
    throw input_error(in.where("row length"),
                      "a multiple of " + std::string(type->name) + "'s block size " +
                          std::to_string(type->block_size),
                      std::to_string(t.ne[0]));
  }
  const auto size = checked_bytes(*type, t.ne);
  if (!size) throw input_error(in.where("shape"), "a byte size that fits in 64 bits", "more");
  bytes = *size;
  t.offset = in.read<std::uint64_t>("offset");
  if (t.offset % alignment != 0) {
    throw input_error(in.where("offset"),
                      "a multiple of the alignment " + std::to_string(alignment),
                      std::to_string(t.offset));
  }
  return t;
}

using Index = std::map<std::string, std::size_t, std::less<>>;

struct Counts {
  std::uint64_t tensors, kv;
};

// Magic, version and the two counts, each count bounded by the bytes left.
Counts read_header(Cursor& in, std::uint32_t& version) {
  const auto magic = in.read<std::array<char, 4>>("magic");
  if (magic != kMagic) {
    throw input_error(in.where(""), "the GGUF magic \"GGUF\"",
                      in_quotes(std::string(magic.data(), magic.size())));
  }
  version = in.read<std::uint32_t>("version");
  if (version < kOldestVersion || version > kWriteVersion) {
    throw input_error(in.where(""), "GGUF version 2 or 3", "version " + std::to_string(version));
  }
  const auto n_tensors = in.read<std::uint64_t>("tensor count");
  const auto n_kv = in.read<std::uint64_t>("metadata count");
  if (n_kv > in.left() / kMinKvBytes || n_tensors > in.left() / kMinTensorInfoBytes) {
    throw input_error(
        in.where(""), "counts that fit in the " + std::to_string(in.left()) + " bytes left",
        std::to_string(n_kv) + " metadata entries and " + std::to_string(n_tensors) + " tensors");
  }
  return {n_tensors, n_kv};
}

void read_metadata(Cursor& in, std::uint64_t count,
                   std::vector<std::pair<std::string, Value>>& metadata, Index& index) {
  for (std::uint64_t i = 0; i < count; ++i) {
    in.set_subject("metadata entry " + std::to_string(i));
    std::string key = in.read_string("key");
    if (key.empty()) throw input_error(in.where("key"), "a non-empty key", "an empty string");
    in.set_subject("key " + in_quotes(key));
    if (index.contains(key)) throw input_error(in.where(""), "each key once", "a duplicate");
    const ValueType type = read_value_type(in, "value type");
    Value value = read_value(in, type, 0);
    index.emplace(key, metadata.size());
    metadata.emplace_back(std::move(key), std::move(value));
  }
}

// Tensor infos, then each tensor's data located in `file`: the data section
// starts at the first aligned offset after the infos.
void read_tensors(Cursor& in, std::uint64_t count, std::uint64_t alignment,
                  std::span<const std::byte> file, std::vector<TensorInfo>& tensors, Index& index) {
  std::vector<std::uint64_t> bytes(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    TensorInfo t = read_tensor_info(in, i, alignment, bytes[i]);
    if (index.contains(t.name)) throw input_error(in.where(""), "each name once", "a duplicate");
    index.emplace(t.name, tensors.size());
    tensors.push_back(std::move(t));
  }
  const std::uint64_t data_start =
      std::min<std::uint64_t>(align_up(in.pos(), alignment), file.size());
  const std::uint64_t data_size = file.size() - data_start;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    TensorInfo& t = tensors[i];
    if (t.offset > data_size || bytes[i] > data_size - t.offset) {
      in.set_subject("tensor " + in_quotes(t.name));
      throw input_error(
          in.where(""), "data inside the data section's " + std::to_string(data_size) + " bytes",
          "offset " + std::to_string(t.offset) + " + " + std::to_string(bytes[i]) + " bytes");
    }
    t.data = file.subspan(data_start + t.offset, bytes[i]);
  }
}

void check_no_overlap(const std::vector<TensorInfo>& tensors, const std::filesystem::path& path) {
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    const TensorInfo& cur = *by_offset[i];
    if (cur.offset < prev.offset + prev.data.size()) {
      throw input_error(path.string() + ": tensor " + in_quotes(cur.name),
                        "data not overlapping other tensors",
                        "offset " + std::to_string(cur.offset) + " inside tensor " +
                            in_quotes(prev.name) + " (offset " + std::to_string(prev.offset) +
                            ", " + std::to_string(prev.data.size()) + " bytes)");
    }
  }
}

// ---------------------------------------------------------------- writing

void append_bytes(std::string& out, const void* data, std::size_t size) {
  out.append(static_cast<const char*>(data), size);
}

template <typename T>
requires std::is_arithmetic_v<T>
void append_payload(std::string& out, T value) {
  append_bytes(out, &value, sizeof value);  // little-endian host
}

void append_payload(std::string& out, bool value) { out.push_back(value ? '\1' : '\0'); }

void append_payload(std::string& out, const std::string& text) {
  append_payload(out, static_cast<std::uint64_t>(text.size()));
  out += text;
}

void append_payload(std::string& out, const Array& array);

void append_value(std::string& out, const Value& value) {
  PTQ_ASSERT(value.data.index() == static_cast<std::size_t>(value.type));
  std::visit([&](const auto& x) { append_payload(out, x); }, value.data);
}

void append_payload(std::string& out, const Array& array) {
  append_payload(out, static_cast<std::uint32_t>(array.element_type));
  append_payload(out, static_cast<std::uint64_t>(array.items.size()));
  for (const auto& item : array.items) {
    PTQ_ASSERT(item.type == array.element_type);
    append_value(out, item);
  }
}

// Names and keys llama.cpp would refuse to load are input errors, caught before writing.
void check_writable_names(std::span<const std::pair<std::string, Value>> metadata,
                          std::span<const TensorToWrite> tensors, const std::string& where) {
  std::set<std::string_view> keys, names;
  for (const auto& [key, value] : metadata) {
    if (key.empty()) throw input_error(where + ": metadata", "non-empty keys", "an empty key");
    if (!keys.insert(key).second) {
      throw input_error(where + ": key " + in_quotes(key), "each key once", "a duplicate");
    }
  }
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name.size() > kMaxNameBytes) {
      throw input_error(where + ": tensor " + in_quotes(t.name), "a name of 1 to 63 bytes",
                        std::to_string(t.name.size()) + " bytes");
    }
    if (!names.insert(t.name).second) {
      throw input_error(where + ": tensor " + in_quotes(t.name), "each name once", "a duplicate");
    }
  }
}

// Header, metadata and tensor infos, padded so the data section starts aligned.
std::string build_header(std::span<const std::pair<std::string, Value>> metadata,
                         std::span<const TensorToWrite> tensors, std::uint64_t alignment) {
  std::string out(kMagic.data(), kMagic.size());
  append_payload(out, kWriteVersion);
  append_payload(out, static_cast<std::uint64_t>(tensors.size()));
  append_payload(out, static_cast<std::uint64_t>(metadata.size()));
  for (const auto& [key, value] : metadata) {
    append_payload(out, key);
    append_payload(out, static_cast<std::uint32_t>(value.type));
    append_value(out, value);
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    const TensorTypeInfo* type = find_tensor_type(t.type);
    PTQ_ASSERT(type != nullptr);
    append_payload(out, t.name);
    append_payload(out, static_cast<std::uint32_t>(t.ne.size()));
    for (const auto d : t.ne) append_payload(out, d);
    append_payload(out, t.type);
    append_payload(out, offset);
    offset += align_up(tensor_bytes(*type, t.ne), alignment);
  }
  out.resize(align_up(out.size(), alignment), '\0');
  return out;
}

}  // namespace

// ---------------------------------------------------------------- tables and values

std::string_view value_type_name(ValueType type) {
  const auto id = static_cast<std::uint32_t>(type);
  return id < kValueTypeCount ? kValueTypeNames[id] : "unknown";
}

std::span<const TensorTypeInfo> tensor_types() { return kTensorTypes; }

const TensorTypeInfo* find_tensor_type(std::uint32_t id) {
  for (const auto& t : kTensorTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const TensorTypeInfo* find_tensor_type(std::string_view name) {
  for (const auto& t : kTensorTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::uint64_t tensor_bytes(const TensorTypeInfo& type, std::span<const std::int64_t> ne) {
  PTQ_ASSERT(!ne.empty() && ne.size() <= kMaxDims && ne[0] % type.block_size == 0);
  PTQ_ASSERT(std::all_of(ne.begin(), ne.end(), [](std::int64_t d) { return d >= 1; }));
  const auto bytes = checked_bytes(type, ne);
  PTQ_ASSERT(bytes.has_value());
  return *bytes;
}

std::int64_t Value::as_int(std::string_view key) const {
  return std::visit(
      [&](const auto& x) -> std::int64_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, std::uint64_t>) {
            if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
              throw input_error(std::string(key), "an integer below 2^63", describe(*this));
            }
          }
          return static_cast<std::int64_t>(x);
        } else {
          throw input_error(std::string(key), "an integer", describe(*this));
        }
      },
      data);
}

double Value::as_float(std::string_view key) const {
  return std::visit(
      [&](const auto& x) -> double {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<double>(x);
        } else {
          throw input_error(std::string(key), "a number", describe(*this));
        }
      },
      data);
}

bool Value::as_bool(std::string_view key) const {
  if (const auto* b = std::get_if<bool>(&data)) return *b;
  throw input_error(std::string(key), "a bool", describe(*this));
}

const std::string& Value::as_string(std::string_view key) const {
  if (const auto* s = std::get_if<std::string>(&data)) return *s;
  throw input_error(std::string(key), "a string", describe(*this));
}

const Array& Value::as_array(std::string_view key) const {
  if (const auto* a = std::get_if<Array>(&data)) return *a;
  throw input_error(std::string(key), "an array", describe(*this));
}

Value make_u32(std::uint32_t v) { return {ValueType::u32, v}; }
Value make_i32(std::int32_t v) { return {ValueType::i32, v}; }
Value make_u64(std::uint64_t v) { return {ValueType::u64, v}; }
Value make_f32(float v) { return {ValueType::f32, v}; }
Value make_bool(bool v) { return {ValueType::boolean, v}; }
Value make_string(std::string v) { return {ValueType::string, std::move(v)}; }

Value make_string_array(std::vector<std::string> v) {
  Array array{ValueType::string, {}};
  for (auto& s : v) array.items.push_back(make_string(std::move(s)));
  return {ValueType::array, std::move(array)};
}

Value make_f32_array(std::span<const float> v) {
  Array array{ValueType::f32, {}};
  for (const float x : v) array.items.push_back(make_f32(x));
  return {ValueType::array, std::move(array)};
}

Value make_i32_array(std::span<const std::int32_t> v) {
  Array array{ValueType::i32, {}};
  for (const std::int32_t x : v) array.items.push_back(make_i32(x));
  return {ValueType::array, std::move(array)};
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (const auto d : ne) n *= d;  // cannot overflow: validated when read
  return n;
}

// ---------------------------------------------------------------- File

std::unique_ptr<File> File::open(const std::filesystem::path& path) {
  std::unique_ptr<File> file(new File());
  file->path_ = path;
  const std::span<const std::byte> map = map_file(path);
  file->map_ = map.data();
  file->map_size_ = map.size();

  Cursor in(file->map_, file->map_size_, path);
  const auto [n_tensors, n_kv] = read_header(in, file->version_);
  read_metadata(in, n_kv, file->metadata_, file->key_index_);
  file->alignment_ =
      alignment_of(file->find(kAlignmentKey), path.string() + ": key \"general.alignment\"");
  read_tensors(in, n_tensors, file->alignment_, {file->map_, file->map_size_}, file->tensors_,
               file->tensor_index_);
  check_no_overlap(file->tensors_, path);
  return file;
}

File::~File() { unmap_file({map_, map_size_}); }

const Value* File::find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const Value& File::require(std::string_view key) const {
  if (const Value* value = find(key)) return *value;
  throw input_error(path_.string(), "metadata key " + in_quotes(key), "none");
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::require_tensor(std::string_view name) const {
  if (const TensorInfo* t = find_tensor(name)) return *t;
  throw input_error(path_.string(), "tensor " + in_quotes(name), "none");
}

// ---------------------------------------------------------------- write

namespace {

std::uint64_t write_alignment(std::span<const std::pair<std::string, Value>> metadata,
                              const std::string& where) {
  std::uint64_t alignment = kDefaultAlignment;
  for (const auto& [key, value] : metadata)
    if (key == kAlignmentKey) alignment = alignment_of(&value, where + ": key " + in_quotes(key));
  return alignment;
}

}  // namespace

FileLayout file_layout(std::span<const std::pair<std::string, Value>> metadata,
                       std::span<const TensorToWrite> tensors) {
  const std::uint64_t alignment = write_alignment(metadata, "GGUF metadata");
  return {build_header(metadata, tensors, alignment).size(), alignment};
}

namespace {

// A float tensor's NaN or infinity is a wrong result, never written (block
// types' scales are checked where they are quantized, in their reports).
void require_finite(const TensorTypeInfo& info, const std::string& name,
                    std::span<const std::byte> data) {
  const std::optional<DType> dtype = parse_dtype(info.name);
  if (!dtype) return;
  if (const auto bad = first_non_finite(*dtype, data))
    throw input_error("tensor " + name + ", element " + std::to_string(*bad),
                      "finite values in the output", "NaN or infinity (nothing was written)");
}

}  // namespace

void write_streamed(const std::filesystem::path& path,
                    std::span<const std::pair<std::string, Value>> metadata,
                    std::span<const TensorSlot> slots, const TensorProducer& produce) {
  std::vector<TensorToWrite> tensors;
  for (const auto& s : slots) tensors.push_back({s.name, s.ne, 0, {}});
  check_writable_names(metadata, tensors, path.string());
  const std::uint64_t alignment = write_alignment(metadata, path.string());
  // The header's length does not depend on the types and offsets it holds: a
  // placeholder takes its place until every tensor's type is known.
  const std::string placeholder = build_header(metadata, tensors, alignment);
  OutputFile output(path, "GGUF file");
  FileWriter out(output.temp_path());
  out.write_all(placeholder.data(), placeholder.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const ProducedTensor t = produce(i);
    const TensorTypeInfo* info = find_tensor_type(t.type);
    PTQ_ASSERT(info != nullptr && tensor_bytes(*info, tensors[i].ne) == t.data.size());
    tensors[i].type = t.type;
    require_finite(*info, tensors[i].name, t.data);
    out.write_all(t.data.data(), t.data.size());
    out.pad_to(t.data.size(), alignment);
  }
  const std::string header = build_header(metadata, tensors, alignment);
  PTQ_ASSERT(header.size() == placeholder.size());
  out.write_at(0, header.data(), header.size());
  out.sync_and_close();
  output.commit();
}

void write(const std::filesystem::path& path,
           std::span<const std::pair<std::string, Value>> metadata,
           std::span<const TensorToWrite> tensors) {
  std::vector<TensorSlot> slots;
  for (const auto& t : tensors) slots.push_back({t.name, t.ne});
  write_streamed(path, metadata, slots, [&](std::size_t i) {
    return ProducedTensor{tensors[i].type, {tensors[i].data.begin(), tensors[i].data.end()}};
  });
}

}  // namespace ptq::gguf
