// Checkpoint: which files hold a Hugging Face model's weights (one
// model.safetensors, or an index of shards), each validated on open.
#include <algorithm>
#include <cstring>
#include <set>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"

namespace ptq {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

bool is_pickle_name(const fs::path& p) {
  const auto ext = p.extension().string();
  return ext == ".bin" || ext == ".pt" || ext == ".pth";
}

[[noreturn]] void throw_pickled(const fs::path& where, const fs::path& pickle) {
  throw input_error(
      where.string(), "safetensors weights (model.safetensors or model.safetensors.index.json)",
      "only the pickled checkpoint " + pickle.filename().string() +
          "; pickled checkpoints are not read (they can run code): convert to safetensors, "
          "e.g. with transformers: model.save_pretrained(dir, safe_serialization=True)");
}

// A shard name from the index must be a plain file name in the index's folder.
fs::path shard_path(const fs::path& index, const std::string& shard) {
  const fs::path name(shard);
  if (shard.empty() || name.has_parent_path() || name != name.filename() || shard == "." ||
      shard == "..") {
    throw input_error(index.string(), "shard names that are plain file names", "\"" + shard + "\"");
  }
  const fs::path path = index.parent_path() / name;
  std::error_code error;  // e.g. a name too long for the file system: not an exception
  if (!fs::is_regular_file(path, error)) {
    throw input_error(index.string(), "shard \"" + shard + "\" to exist",
                      error ? error.message() : "no such file " + path.string());
  }
  return path;
}

// weight_map: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  const json doc = read_json_file(index.string());
  const auto it = doc.is_object() ? doc.find("weight_map") : doc.end();
  if (it == doc.end() || !it->is_object()) {
    throw input_error(index.string(), "an object with a \"weight_map\" object",
                      json_type_name(doc));
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, shard] : it->items()) {
    if (!shard.is_string()) {
      throw input_error(index.string() + ": weight_map \"" + tensor + "\"",
                        "a shard file name string", describe_json(shard));
    }
    weight_map.emplace(tensor, shard.get<std::string>());
  }
  return weight_map;
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& path) {
  Checkpoint ckpt;
  ckpt.path_ = path;
  auto add_file = [&ckpt](const fs::path& file) {
    std::shared_ptr<SafetensorsFile> st = SafetensorsFile::open(file);
    for (const auto& t : st->tensors()) {
      auto [it, inserted] = ckpt.by_name_.emplace(t.name, &t);
      if (!inserted) {
        throw input_error(file.string() + ": tensor \"" + t.name + "\"", "each tensor in one shard",
                          "it also in " + it->second->file.string());
      }
    }
    ckpt.files_.push_back(std::move(st));
  };
  auto open_index = [&](const fs::path& index) {
    const auto weight_map = read_weight_map(index);
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : weight_map) shards.insert(shard);
    for (const auto& shard : shards) add_file(shard_path(index, shard));
    for (const auto& [tensor, shard] : weight_map) {
      const TensorView* t = ckpt.find(tensor);
      if (t == nullptr || t->file.filename() != shard) {
        throw input_error(index.string() + ": tensor \"" + tensor + "\"",
                          "present in shard " + shard,
                          t == nullptr ? "missing" : "it in " + t->file.filename().string());
      }
    }
  };

  if (fs::is_directory(path)) {
    if (fs::is_regular_file(path / kSingleFile)) {
      add_file(path / kSingleFile);
    } else if (fs::is_regular_file(path / kIndexFile)) {
      open_index(path / kIndexFile);
    } else {
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file() && is_pickle_name(entry.path()))
          throw_pickled(path, entry.path());
      }
      throw input_error(path.string(),
                        std::string("a folder with ") + kSingleFile + " or " + kIndexFile,
                        "neither");
    }
  } else if (path.string().ends_with(".index.json")) {
    open_index(path);
  } else if (path.extension() == ".safetensors") {
    add_file(path);
  } else if (is_pickle_name(path)) {
    throw_pickled(path, path);
  } else {
    throw input_error(path.string(),
                      "a checkpoint folder, a .safetensors file or a .index.json file",
                      fs::exists(path) ? "another kind of file" : "nothing at that path");
  }
  return ckpt;
}

OwnedTensor OwnedTensor::float32(std::string name, std::vector<std::int64_t> shape,
                                 std::span<const float> values) {
  OwnedTensor t{std::move(name), DType::F32, std::move(shape),
                std::vector<std::byte>(values.size_bytes())};
  std::memcpy(t.bytes.data(), values.data(), values.size_bytes());
  return t;
}

Checkpoint Checkpoint::from_memory(const fs::path& path, std::vector<OwnedTensor> tensors) {
  auto memory = std::make_shared<Memory>();
  memory->tensors = std::move(tensors);
  for (const OwnedTensor& t : memory->tensors) {
    TensorView view{t.name, t.dtype, t.shape, t.bytes, path};
    if (static_cast<std::size_t>(view.numel()) * dtype_size(t.dtype) != t.bytes.size())
      throw input_error(path.string() + ": tensor " + t.name,
                        std::to_string(view.numel() * dtype_size(t.dtype)) + " bytes",
                        std::to_string(t.bytes.size()));
    memory->views.push_back(std::move(view));
  }
  Checkpoint ckpt;
  ckpt.path_ = path;
  for (const TensorView& v : memory->views)
    if (!ckpt.by_name_.emplace(v.name, &v).second)
      throw input_error(path.string() + ": tensor " + v.name, "one tensor of each name",
                        "it twice");
  ckpt.memory_ = std::move(memory);
  return ckpt;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::require(const std::string& name) const {
  if (const TensorView* t = find(name)) return *t;
  throw input_error(path_.string() + ": tensor " + name, "present", "missing");
}

std::string shape_text(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const TensorView& Checkpoint::require(const std::string& name,
                                      std::span<const std::int64_t> shape) const {
  const TensorView& t = require(name);
  if (!std::ranges::equal(t.shape, shape))
    throw input_error(t.file.string() + ": tensor " + name, "shape " + shape_text(shape),
                      shape_text(t.shape));
  return t;
}

std::vector<const TensorView*> Checkpoint::tensors() const {
  std::vector<const TensorView*> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(view);  // std::map: sorted by name
  return out;
}

std::uint64_t Checkpoint::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [name, view] : by_name_) total += view->bytes.size();
  return total;
}

}  // namespace ptq
