// Writing .safetensors: deterministic bytes, never a half-written file.
//
// Layout: u64 header length, JSON header padded with spaces to a multiple of 8
// (so the data section starts 8-byte aligned), then the tensors back to back
// in the given order. Tensors are contiguous because Hugging Face's reader
// rejects gaps between tensors; each one therefore starts 8-byte aligned
// whenever the tensors before it have sizes that are multiples of 8 (true for
// LLM weight matrices).
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "io/error.hpp"
#include "io/file_writer.hpp"
#include "io/output_path.hpp"
#include "io/safetensors.hpp"

namespace ptq {

namespace {

constexpr std::size_t kAlignment = 8;

std::uint64_t data_size(const TensorToWrite& t) {
  std::uint64_t bytes = dtype_size(t.dtype);
  for (auto d : t.shape) {
    PTQ_ASSERT(d >= 0);
    bytes *= static_cast<std::uint64_t>(d);
  }
  return bytes;
}

// A NaN or infinity in an output is a wrong result, never written.
void require_finite(const TensorToWrite& t) {
  if (const auto bad = first_non_finite(t.dtype, t.bytes))
    throw input_error("tensor " + t.name + ", element " + std::to_string(*bad),
                      "finite values in the output", "NaN or infinity (nothing was written)");
}

// The header of `tensors` (their bytes are not read).
std::string build_header(std::span<const TensorToWrite> tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;  // std::map: sorted keys
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    PTQ_ASSERT(names.insert(t.name).second);  // duplicate names are a caller bug
    const std::uint64_t bytes = data_size(t);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((kAlignment - text.size() % kAlignment) % kAlignment, ' ');
  return text;
}

// Writes `path` atomically: the header, then what `write_data` writes.
template <class WriteData>
void write_file(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                const std::map<std::string, std::string>& metadata, WriteData&& write_data) {
  const std::string header = build_header(tensors, metadata);
  const std::uint64_t header_length = header.size();  // written little-endian (host order)
  OutputFile file(path, "");
  FileWriter out(file.temp_path());
  out.write_all(&header_length, sizeof header_length);
  out.write_all(header.data(), header.size());
  write_data(out);
  out.sync_and_close();
  file.commit();
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  for (const auto& t : tensors) {
    PTQ_ASSERT(data_size(t) == t.bytes.size());
    require_finite(t);
  }
  write_file(path, tensors, metadata, [&](FileWriter& out) {
    for (const auto& t : tensors) out.write_all(t.bytes.data(), t.bytes.size());
  });
}

SafetensorsStreamWriter::SafetensorsStreamWriter(std::filesystem::path data_file)
    : data_path_(std::move(data_file)), data_(std::make_unique<FileWriter>(data_path_)) {}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  data_.reset();
  std::error_code ignored;
  std::filesystem::remove(data_path_, ignored);
}

void SafetensorsStreamWriter::add(const TensorToWrite& tensor) {
  PTQ_ASSERT(data_ != nullptr && data_size(tensor) == tensor.bytes.size());
  require_finite(tensor);
  data_->write_all(tensor.bytes.data(), tensor.bytes.size());
  entries_.push_back({tensor.name, tensor.dtype, tensor.shape, {}});
  data_bytes_ += tensor.bytes.size();
}

std::vector<std::string> SafetensorsStreamWriter::names() const {
  std::vector<std::string> names;
  for (const auto& e : entries_) names.push_back(e.name);
  return names;
}

void SafetensorsStreamWriter::finish(const std::filesystem::path& path,
                                     const std::map<std::string, std::string>& metadata) {
  PTQ_ASSERT(data_ != nullptr);
  data_.reset();  // closed, not synced: the scratch data is copied into the file next
  write_file(path, entries_, metadata, [&](FileWriter& out) { out.append_file(data_path_); });
  std::filesystem::remove(data_path_);
}

}  // namespace ptq
