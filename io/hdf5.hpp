#pragma once
// HDF5 files for calibration statistics and quantized tensors.
// Writing goes through OutputFile (io/output_path.hpp): a hidden temporary file,
// renamed on commit(); a symlink or special file at the final path is refused.
// It is byte-deterministic:
// HDF5's per-object timestamps are switched off, so the same content gives the
// same bytes. Datasets are addressed by '/'-separated paths; groups are created
// on demand. All errors are InputError naming the file and object.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "io/output_path.hpp"

namespace ptq {

class H5Writer {
 public:
  explicit H5Writer(const std::filesystem::path& final_path);
  ~H5Writer();  // without commit(): the temporary file is removed
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  template <typename T>  // float, double, int32_t, int64_t, uint8_t
  void write(const std::string& path, std::span<const T> data, const std::vector<std::int64_t>& shape);

  // Attributes on a group or dataset (created first if it is a group path).
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  void set_attribute(const std::string& object, const std::string& name, std::int64_t value);
  void set_attribute(const std::string& object, const std::string& name, double value);

  void commit();  // closes the file and renames it to its final name

 private:
  std::int64_t open_group(const std::string& path);  // hid_t; caller closes
  OutputFile output_;
  std::int64_t file_ = -1;  // hid_t
  std::int64_t ocpl_ = -1;  // object creation: no timestamps
};

class H5Reader {
 public:
  explicit H5Reader(const std::filesystem::path& path);
  ~H5Reader();
  H5Reader(const H5Reader&) = delete;
  H5Reader& operator=(const H5Reader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  bool has(const std::string& path) const;
  std::vector<std::int64_t> shape(const std::string& dataset) const;
  std::vector<std::string> children(const std::string& group) const;  // sorted names

  template <typename T>
  std::vector<T> read(const std::string& dataset) const;

  std::string string_attribute(const std::string& object, const std::string& name) const;
  std::int64_t int_attribute(const std::string& object, const std::string& name) const;
  double float_attribute(const std::string& object, const std::string& name) const;
  bool has_attribute(const std::string& object, const std::string& name) const;

 private:
  std::filesystem::path path_;
  std::int64_t file_ = -1;
};

}  // namespace ptq
