// llama.cpp's GGUF importance matrix: read and validated the way llama-quantize
// loads it, written the way llama-imatrix saves it.
#include "io/imatrix.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "io/error.hpp"
#include "io/gguf.hpp"

namespace ptq {

namespace {

constexpr std::string_view kSumsSuffix = ".in_sum2";
constexpr std::string_view kCountsSuffix = ".counts";
constexpr std::string_view kTypeKey = "general.type";
constexpr std::string_view kDatasetsKey = "imatrix.datasets";
constexpr std::string_view kChunkCountKey = "imatrix.chunk_count";
constexpr std::string_view kChunkSizeKey = "imatrix.chunk_size";

std::uint32_t f32_type() { return gguf::find_tensor_type("F32")->id; }

std::string tensor_where(const std::filesystem::path& path, std::string_view name) {
  return path.string() + ": tensor \"" + std::string(name) + "\"";
}

// Sums of squares and token counts: anything else would poison every quantizer.
void check_values(std::span<const float> values, const std::string& where) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]) || values[i] < 0) {
      throw input_error(where + " element " + std::to_string(i), "a finite value >= 0",
                        std::to_string(values[i]));
    }
  }
}

std::vector<float> read_values(const gguf::TensorInfo& t, const std::filesystem::path& path) {
  const std::string where = tensor_where(path, t.name);
  if (t.type != f32_type()) {
    throw input_error(where, "F32 data", std::string(gguf::find_tensor_type(t.type)->name));
  }
  std::vector<float> values(static_cast<std::size_t>(t.numel()));
  std::memcpy(values.data(), t.data.data(), t.data.size());  // little-endian host
  check_values(values, where);
  return values;
}

// llama-quantize reads these with gguf_get_val_u32, which accepts no other type.
std::uint32_t read_u32(const gguf::File& file, std::string_view key) {
  const gguf::Value& value = file.require(key);
  const std::string where = file.path().string() + ": key \"" + std::string(key) + "\"";
  if (value.type != gguf::ValueType::u32) {
    throw input_error(where, "a u32", std::string(gguf::value_type_name(value.type)));
  }
  return std::get<std::uint32_t>(value.data);
}

std::vector<std::string> read_datasets(const gguf::File& file) {
  const std::string where = file.path().string() + ": key \"" + std::string(kDatasetsKey) + "\"";
  const gguf::Array& array = file.require(kDatasetsKey).as_array(where);
  std::vector<std::string> datasets;
  for (const auto& item : array.items) datasets.push_back(item.as_string(where + " item"));
  return datasets;
}

// The name without `suffix`, or nullopt when it does not end with it.
std::optional<std::string> strip_suffix(std::string_view name, std::string_view suffix) {
  if (!name.ends_with(suffix)) return std::nullopt;
  return std::string(name.substr(0, name.size() - suffix.size()));
}

// Pairs every `<name>.in_sum2` with its `<name>.counts`, in name order.
std::map<std::string, ImatrixEntry, std::less<>> read_entries(const gguf::File& file) {
  struct Pair {
    const gguf::TensorInfo* sums = nullptr;
    const gguf::TensorInfo* counts = nullptr;
  };
  std::map<std::string, Pair> pairs;
  for (const auto& t : file.tensors()) {
    if (auto base = strip_suffix(t.name, kSumsSuffix)) pairs[*base].sums = &t;
    if (auto base = strip_suffix(t.name, kCountsSuffix)) pairs[*base].counts = &t;
  }
  std::map<std::string, ImatrixEntry, std::less<>> entries;
  for (const auto& [name, pair] : pairs) {
    const std::string sums_name = name + std::string(kSumsSuffix);
    const std::string counts_name = name + std::string(kCountsSuffix);
    if (pair.sums == nullptr || pair.counts == nullptr) {
      const std::string& present = pair.sums ? sums_name : counts_name;
      const std::string& missing = pair.sums ? counts_name : sums_name;
      throw input_error(tensor_where(file.path(), present),
                        "a tensor \"" + missing + "\" beside it", "none");
    }
    ImatrixEntry entry{read_values(*pair.sums, file.path()),
                       read_values(*pair.counts, file.path())};
    if (entry.in_sum2.size() % entry.counts.size() != 0) {
      throw input_error(tensor_where(file.path(), sums_name),
                        "a multiple of the " + std::to_string(entry.counts.size()) +
                            " counts of \"" + counts_name + "\"",
                        std::to_string(entry.in_sum2.size()) + " values");
    }
    entries.emplace(name, std::move(entry));
  }
  if (entries.empty()) {
    throw input_error(file.path().string(), "at least one in_sum2/counts tensor pair", "none");
  }
  return entries;
}

void check_entry(const ImatrixEntry& entry, const std::string& where) {
  if (entry.counts.empty() || entry.in_sum2.empty() ||
      entry.in_sum2.size() % entry.counts.size() != 0) {
    throw input_error(where, "in_sum2 of n_columns x n_matrices values, n_matrices = counts >= 1",
                      std::to_string(entry.in_sum2.size()) + " in_sum2 values and " +
                          std::to_string(entry.counts.size()) + " counts");
  }
  check_values(entry.in_sum2, where + " in_sum2");
  check_values(entry.counts, where + " counts");
}

// llama-imatrix makes 2-D tensors; ggml's GGUF writer drops trailing dimensions of 1.
std::vector<std::int64_t> shape(std::size_t ne0, std::size_t ne1) {
  if (ne1 == 1) return {static_cast<std::int64_t>(ne0)};
  return {static_cast<std::int64_t>(ne0), static_cast<std::int64_t>(ne1)};
}

}  // namespace

std::optional<std::vector<float>> Imatrix::importance(std::string_view tensor) const {
  const auto it = entries.find(tensor);
  if (it == entries.end()) return std::nullopt;
  const ImatrixEntry& entry = it->second;
  const std::size_t n = entry.n_columns();
  std::vector<float> importance(entry.in_sum2.size());
  for (std::size_t m = 0; m < entry.n_matrices(); ++m) {
    // llama.cpp's loader keeps counts as integers (std::lround), then divides in float.
    const auto count = static_cast<float>(std::lround(entry.counts[m]));
    for (std::size_t i = m * n; i < (m + 1) * n; ++i) {
      importance[i] = count > 0 ? entry.in_sum2[i] / count : 1.0f;
    }
  }
  return importance;
}

Imatrix read_imatrix(const std::filesystem::path& path) {
  const auto file = gguf::File::open(path);
  Imatrix imatrix;
  imatrix.entries = read_entries(*file);
  imatrix.datasets = read_datasets(*file);
  imatrix.chunk_count = read_u32(*file, kChunkCountKey);
  imatrix.chunk_size = read_u32(*file, kChunkSizeKey);
  return imatrix;
}

void write_imatrix(const std::filesystem::path& path, const Imatrix& imatrix) {
  if (imatrix.entries.empty()) {
    throw input_error(path.string(), "an imatrix with at least one tensor entry", "none");
  }
  const std::vector<std::pair<std::string, gguf::Value>> metadata = {
      {std::string(kTypeKey), gguf::make_string("imatrix")},
      {std::string(kDatasetsKey), gguf::make_string_array(imatrix.datasets)},
      {std::string(kChunkCountKey), gguf::make_u32(imatrix.chunk_count)},
      {std::string(kChunkSizeKey), gguf::make_u32(imatrix.chunk_size)},
  };
  std::vector<gguf::TensorToWrite> tensors;
  for (const auto& [name, entry] : imatrix.entries) {
    check_entry(entry, tensor_where(path, name));
    tensors.push_back({name + std::string(kSumsSuffix),
                       shape(entry.n_columns(), entry.n_matrices()), f32_type(),
                       std::as_bytes(std::span(entry.in_sum2))});
    tensors.push_back({name + std::string(kCountsSuffix), shape(1, entry.n_matrices()), f32_type(),
                       std::as_bytes(std::span(entry.counts))});
  }
  gguf::write(path, metadata, tensors);
}

}  // namespace ptq
