// Seeds of gguf, imatrix and gguf_model: the fixture GGUFs with their
// metadata arrays cut short and a few of their tensors, rewritten with ptq's
// GGUF writer; for gguf_model also one block Linear in each type ptq decodes.
#include "fuzz_util.hpp"
#include "io/gguf.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "seeds.hpp"

namespace ptq::fuzz {

namespace {

namespace fs = std::filesystem;
using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

constexpr std::size_t kArrayItems = 8;
const char* const kQuantized[] = {"Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};

void cut_arrays(gguf::Value& value) {
  if (value.type != gguf::ValueType::array) return;
  auto& items = std::get<gguf::Array>(value.data).items;
  if (items.size() > kArrayItems) items.resize(kArrayItems);
  for (auto& item : items) cut_arrays(item);
}

// The file's metadata, arrays cut short; tokenizer keys dropped when asked.
Metadata shrunk_metadata(const gguf::File& file, bool keep_tokenizer) {
  Metadata out;
  for (auto [key, value] : file.metadata()) {
    if (!keep_tokenizer && key.starts_with("tokenizer.")) continue;
    cut_arrays(value);
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

gguf::TensorToWrite copy(const gguf::TensorInfo& t) { return {t.name, t.ne, t.type, t.data}; }

std::string write_gguf(const Seeds& seeds, const Metadata& metadata,
                       std::span<const gguf::TensorToWrite> tensors) {
  const fs::path path = seeds.work("gguf") / "seed.gguf";
  gguf::write(path, metadata, tensors);
  return read_file(path);
}

// Every fixture: its metadata and its first tensors of a few KiB.
void add_files(const Seeds& seeds) {
  for (const auto& entry : fs::directory_iterator(fixture("gguf"))) {
    const auto file = gguf::File::open(entry.path());
    std::vector<gguf::TensorToWrite> tensors;
    for (const auto& t : file->tensors())
      if (t.data.size() <= 8192 && tensors.size() < 4) tensors.push_back(copy(t));
    seeds.add("gguf", entry.path().filename().string(),
              write_gguf(seeds, shrunk_metadata(*file, true), tensors));
  }
  const auto imatrix = gguf::File::open(fixture("gguf/tiny-imatrix.gguf"));
  std::vector<gguf::TensorToWrite> pairs;
  for (std::size_t i = 0; i < 4; ++i) pairs.push_back(copy(imatrix->tensors()[i]));
  seeds.add("imatrix", "tiny-imatrix.gguf",
            write_gguf(seeds, shrunk_metadata(*imatrix, true), pairs));
}

// tiny's hyperparameters but one key/value head of 32 dimensions, so that its
// k_proj, [32, 256], is a block Linear of a few KiB in any type.
constexpr std::pair<const char*, std::uint32_t> kSmallHeads[] = {
    {"llama.attention.head_count", 8},
    {"llama.attention.head_count_kv", 1},
    {"llama.attention.key_length", 32},
    {"llama.attention.value_length", 32},
    {"llama.rope.dimension_count", 32}};
const std::vector<std::int64_t> kKeyShape = {256, 32};  // ggml order

// A model holding tiny's norms and k_proj of `type` with `bytes`.
std::string model_seed(const Seeds& seeds, const gguf::File& f16, std::uint32_t type,
                       std::span<const std::byte> bytes) {
  Metadata metadata = shrunk_metadata(f16, false);
  for (auto& [key, value] : metadata)
    for (const auto& [small_key, v] : kSmallHeads)
      if (key == small_key) value = gguf::make_u32(v);
  const std::vector<gguf::TensorToWrite> tensors = {
      copy(f16.require_tensor("output_norm.weight")),
      copy(f16.require_tensor("blk.0.attn_norm.weight")),
      {"blk.0.attn_k.weight", kKeyShape, type, bytes}};
  return write_gguf(seeds, metadata, tensors);
}

void add_models(const Seeds& seeds) {
  const auto f16 = gguf::File::open(fixture("gguf/tiny-f16.gguf"));
  for (const char* name : kQuantized) {
    const auto file = gguf::File::open(fixture("gguf/tiny-" + std::string(name) + ".gguf"));
    const auto& k = file->require_tensor("blk.0.attn_k.weight");
    // Its first rows (ggml's rows are contiguous).
    const auto bytes = gguf::tensor_bytes(*gguf::find_tensor_type(k.type), kKeyShape);
    seeds.add("gguf_model", std::string("tiny-") + name,
              model_seed(seeds, *f16, k.type, k.data.first(bytes)));
  }
  // The other block types ptq decodes, on bytes of a fixed pattern.
  for (const auto& type : gguf::tensor_types()) {
    if (!gguf_grid(type.id)) continue;
    std::vector<std::byte> bytes(gguf::tensor_bytes(type, kKeyShape));
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 37 % 251);
    seeds.add("gguf_model", "pattern-" + std::string(type.name),
              model_seed(seeds, *f16, type.id, bytes));
  }
}

}  // namespace

void add_gguf_seeds(const Seeds& seeds) {
  add_files(seeds);
  add_models(seeds);
}

}  // namespace ptq::fuzz
