#pragma once
// GGUF v3, llama.cpp's model file: memory-mapped reading (a 40 GB file is never
// copied) and writing through the project's safe output writer. Every malformed
// input throws InputError naming the file and the key or tensor.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata
// count; metadata (string key, u32 value type, value); tensor infos (string
// name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset
// relative to the data section); padding to general.alignment (default 32);
// the data section, each tensor aligned. Strings are u64 length + UTF-8 bytes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ptq::gguf {

enum class ValueType : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

struct Value;
// An array: one element type; nested arrays are allowed by the format.
struct Array {
  ValueType element_type = ValueType::u8;
  std::vector<Value> items;
};

struct Value {
  ValueType type = ValueType::u8;
  std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t,
               std::int32_t, float, bool, std::string, Array, std::uint64_t, std::int64_t,
               double>
      data;

  // Typed reads; InputError naming `key` when the stored type is not the one
  // asked for (integers of any width convert when the value fits).
  std::int64_t as_int(std::string_view key) const;
  double as_float(std::string_view key) const;
  bool as_bool(std::string_view key) const;
  const std::string& as_string(std::string_view key) const;
  const Array& as_array(std::string_view key) const;
};

// "u8", "string", "array", ...: GGUF's value type names, for messages and listings.
std::string_view value_type_name(ValueType type);

// Value builders for writers.
Value make_u32(std::uint32_t v);
Value make_i32(std::int32_t v);
Value make_u64(std::uint64_t v);
Value make_f32(float v);
Value make_bool(bool v);
Value make_string(std::string v);
Value make_string_array(std::vector<std::string> v);
Value make_f32_array(std::span<const float> v);
Value make_i32_array(std::span<const std::int32_t> v);

// ggml's tensor types as GGUF stores them (ggml.h enum ggml_type): id, name,
// weights per block and bytes per block.
struct TensorTypeInfo {
  std::uint32_t id;
  std::string_view name;  // "F32", "Q4_K", ...
  int block_size;
  int type_size;
};
std::span<const TensorTypeInfo> tensor_types();  // the types ptq reads and writes
const TensorTypeInfo* find_tensor_type(std::uint32_t id);           // nullptr if unknown
const TensorTypeInfo* find_tensor_type(std::string_view name);      // nullptr if unknown
// Bytes of a tensor of `type` with shape `ne` (ggml order): numel / block_size * type_size.
// The shape must be valid (1-4 dims, each >= 1, ne[0] a multiple of the block size).
std::uint64_t tensor_bytes(const TensorTypeInfo& type, std::span<const std::int64_t> ne);

struct TensorInfo {
  std::string name;
  std::vector<std::int64_t> ne;  // ggml order: ne[0] is the row length (innermost)
  std::uint32_t type = 0;        // a tensor_types() id
  std::uint64_t offset = 0;      // from the start of the data section
  std::span<const std::byte> data;  // exactly the tensor's bytes (in the mapped file)

  std::int64_t numel() const;
  std::int64_t rows() const { return numel() / ne.at(0); }  // every dim past the first
};

class File {
 public:
  static std::unique_ptr<File> open(const std::filesystem::path& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }  // file order
  const Value* find(std::string_view key) const;  // nullptr if absent
  const Value& require(std::string_view key) const;  // InputError naming file and key
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr if absent
  const TensorInfo& require_tensor(std::string_view name) const;

 private:
  File() = default;
  std::filesystem::path path_;
  const std::byte* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> key_index_, tensor_index_;
};

struct TensorToWrite {
  std::string name;
  std::vector<std::int64_t> ne;  // ggml order, innermost first
  std::uint32_t type = 0;
  std::span<const std::byte> data;  // numel / block_size * type_size bytes
};

// Where `write` puts the first tensor's data for this metadata and these tensor
// infos (names, shapes and types; their data is not read), and the alignment
// every tensor's data is padded to: the file's size is data_offset plus each
// tensor's bytes rounded up to the alignment.
struct FileLayout {
  std::uint64_t data_offset = 0;
  std::uint64_t alignment = 32;
};
FileLayout file_layout(std::span<const std::pair<std::string, Value>> metadata,
                       std::span<const TensorToWrite> tensors);

// Writes a GGUF v3 file: metadata in the given order (general.alignment, if
// present, sets the data alignment), then tensor infos and data in the given
// order, each tensor's data aligned. Atomic: the file appears complete or not at all.
// Byte for byte what llama.cpp's gguf_write_to_file writes for the same content:
// zero padding after the tensor infos and after every tensor (the last one too).
// `ne` is written as given (llama.cpp's writer drops trailing 1s; pass the shape
// without them to get its bytes). Names llama.cpp cannot load (empty or duplicate
// keys, duplicate tensor names, tensor names over 63 bytes) and a general.alignment
// that is not a u32 power of two are InputErrors naming `path`.
void write(const std::filesystem::path& path,
           std::span<const std::pair<std::string, Value>> metadata,
           std::span<const TensorToWrite> tensors);

// A tensor to write whose type and data are produced when its turn comes.
struct TensorSlot {
  std::string name;
  std::vector<std::int64_t> ne;  // ggml order, innermost first
};
struct ProducedTensor {
  std::uint32_t type = 0;
  std::vector<std::byte> data;
};
using TensorProducer = std::function<ProducedTensor(std::size_t index)>;

// `write`, with each tensor's type and data from produce(i), called once per
// tensor in order and written before the next is asked for: a model larger
// than memory is written holding one tensor's bytes at a time.
void write_streamed(const std::filesystem::path& path,
                    std::span<const std::pair<std::string, Value>> metadata,
                    std::span<const TensorSlot> slots, const TensorProducer& produce);

}  // namespace ptq::gguf
