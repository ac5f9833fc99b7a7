#pragma once
// safetensors: memory-mapped reading (single file or sharded with
// model.safetensors.index.json) with zero-copy tensor views, and atomic writing.
// Every malformed input throws InputError naming the file and tensor.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/dtype.hpp"

namespace ptq {

class FileWriter;

// A view into a mapped file; valid while the owning SafetensorsFile/Checkpoint lives.
// "[2, 3]": a shape in error messages.
std::string shape_text(std::span<const std::int64_t> shape);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;   // row-major, outermost first
  std::span<const std::byte> bytes;  // exactly numel() * dtype_size(dtype) bytes
  std::filesystem::path file;        // for error messages

  std::int64_t numel() const;
  // All elements as float32 (F32/F16/BF16 only; InputError otherwise).
  std::vector<float> to_float() const;
};

class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in header order
  const TensorView* find(const std::string& name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  const std::byte* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::size_t> index_;
};

// A Hugging Face checkpoint's weights: a folder with model.safetensors or
// model.safetensors.index.json + shards, or a single .safetensors file.
// A folder holding only pytorch_model.bin is refused with advice to convert.
// A tensor held in memory (a decoded file of another format).
struct OwnedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;

  // A float32 tensor holding a copy of `values` (as many as `shape` counts).
  static OwnedTensor float32(std::string name, std::vector<std::int64_t> shape,
                             std::span<const float> values);
};

class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& path);
  // Tensors decoded from another format (e.g. a GGUF file), named and shaped as
  // a Hugging Face checkpoint's; `path` names them in messages. InputError on a
  // repeated name or bytes that do not fit the shape.
  static Checkpoint from_memory(const std::filesystem::path& path,
                                std::vector<OwnedTensor> tensors);

  const std::filesystem::path& path() const { return path_; }
  const TensorView* find(const std::string& name) const;
  // InputError "<checkpoint>: tensor <name>: expected present, found missing".
  const TensorView& require(const std::string& name) const;
  // The tensor, of shape `shape`; InputError naming the file and tensor, with
  // both shapes, when it has another.
  const TensorView& require(const std::string& name, std::span<const std::int64_t> shape) const;
  std::vector<const TensorView*> tensors() const;  // sorted by name
  std::uint64_t total_bytes() const;

 private:
  std::filesystem::path path_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  struct Memory {
    std::vector<OwnedTensor> tensors;
    std::vector<TensorView> views;  // into `tensors`
  };
  std::shared_ptr<const Memory> memory_;
  std::map<std::string, const TensorView*> by_name_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;
};

// Writes a .safetensors file atomically (temporary name in the same folder,
// then rename); tensors are laid out in the given order, 8-byte aligned.
void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A .safetensors file whose tensors come one at a time, for outputs larger than
// memory: each tensor's bytes go to `data_file` as it is added; finish() writes
// the file at `path` (header, then the data copied by the kernel) atomically
// and removes the data file, as the destructor does when finish() never ran.
class SafetensorsStreamWriter {
 public:
  explicit SafetensorsStreamWriter(std::filesystem::path data_file);
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  void add(const TensorToWrite& tensor);
  std::uint64_t data_bytes() const { return data_bytes_; }
  std::vector<std::string> names() const;  // of the tensors added, in order
  void finish(const std::filesystem::path& path,
              const std::map<std::string, std::string>& metadata);

 private:
  std::filesystem::path data_path_;
  std::unique_ptr<FileWriter> data_;
  std::vector<TensorToWrite> entries_;  // without their bytes
  std::uint64_t data_bytes_ = 0;
};

}  // namespace ptq
