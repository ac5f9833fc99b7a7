// Seeds of safetensors, safetensors_index, model_config, recipe and calib.
#include <cstring>
#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "io/safetensors.hpp"
#include "seeds.hpp"

namespace ptq::fuzz {

namespace {

namespace fs = std::filesystem;

const fs::path kTestModels = fs::path(PTQ_SOURCE_DIR) / "tests/data/models";

// A checkpoint's tensors of at most `max_bytes` (norms, biases) and its metadata.
std::string shrunk_safetensors(const fs::path& source, std::size_t max_bytes,
                               const fs::path& scratch) {
  const auto file = SafetensorsFile::open(source);
  std::vector<TensorToWrite> kept;
  for (const TensorView& t : file->tensors())
    if (t.bytes.size() <= max_bytes) kept.push_back({t.name, t.dtype, t.shape, t.bytes});
  write_safetensors(scratch, kept, file->metadata());
  return read_file(scratch);
}

// One small tensor of every dtype, an empty one and a scalar.
std::string every_dtype_safetensors(const fs::path& scratch) {
  constexpr DType kTypes[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                              DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};
  std::vector<std::byte> bytes(64);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i % 2);
  std::vector<TensorToWrite> tensors;
  for (const DType t : kTypes)
    tensors.push_back(
        {"t." + std::string(dtype_name(t)), t, {2, 2}, std::span(bytes).first(4 * dtype_size(t))});
  tensors.push_back({"empty", DType::F32, {0, 3}, {}});
  tensors.push_back({"scalar", DType::F32, {}, std::span(bytes).first(4)});
  write_safetensors(scratch, tensors, {{"format", "pt"}});
  return read_file(scratch);
}

void add_safetensors(const Seeds& seeds) {
  const fs::path scratch = seeds.work("safetensors") / "model.safetensors";
  seeds.add("safetensors", "tiny-norms.safetensors",
            shrunk_safetensors(fixture("models/tiny/model.safetensors"), 4096, scratch));
  seeds.add("safetensors", "qwen3-small-tensors.safetensors",
            shrunk_safetensors(kTestModels / "qwen3/model.safetensors", 1024, scratch));
  seeds.add("safetensors", "every-dtype.safetensors", every_dtype_safetensors(scratch));
}

// Indexes of the shards that safetensors_index_fuzz.cpp writes, and of the
// test models' (whose shards are absent there).
void add_safetensors_index(const Seeds& seeds) {
  const nlohmann::ordered_json index = {{"metadata", {{"total_size", 64}}},
                                        {"weight_map",
                                         {{"a", "model-00001-of-00002.safetensors"},
                                          {"b", "model-00001-of-00002.safetensors"},
                                          {"c", "model-00002-of-00002.safetensors"}}}};
  seeds.add("safetensors_index", "two-shards.json", index.dump(2));
  seeds.add("safetensors_index", "mistral.json",
            read_file(kTestModels / "mistral/model.safetensors.index.json"));
}

void add_model_configs(const Seeds& seeds) {
  seeds.add("model_config", "tiny.json", read_file(fixture("models/tiny/config.json")));
  for (const char* name : {"llama3rope", "llama3rope_band", "mistral", "qwen2", "qwen3"})
    seeds.add("model_config", std::string(name) + ".json",
              read_file(kTestModels / name / "config.json"));
  seeds.add("model_config", "llama3rope-oldstyle.json",
            read_file(kTestModels / "llama3rope/config_oldstyle.json"));
}

void add_recipes(const Seeds& seeds) {
  for (const auto& entry : fs::directory_iterator(fs::path(PTQ_SOURCE_DIR) / "recipes"))
    seeds.add("recipe", entry.path().filename().string(), read_file(entry.path()));
}

// calib_fuzz.cpp's first byte picks the source kind: jsonl, text, ids, folder.
void add_calibration_sources(const Seeds& seeds) {
  const std::string text =
      read_file(fixture("corpus/generic_eval/wikitext2_test.txt")).substr(0, 2048);
  std::string jsonl;
  for (std::size_t at = 0; at < text.size(); at += 512)
    jsonl += nlohmann::json{{"text", text.substr(at, 512)}}.dump() + "\n";
  const std::string ids = read_file(fixture("goldens/tiny/calib_generic.ids")).substr(0, 256);
  const std::string docs[] = {text.substr(0, 1024), text.substr(1024)};
  seeds.add("calib", "jsonl", '\0' + jsonl);
  seeds.add("calib", "text", '\1' + text);
  seeds.add("calib", "ids", '\2' + ids);
  seeds.add("calib", "folder", '\3' + join_files(docs));
}

// ids_fuzz.cpp's input: the vocab_size (int32), then the file.
void add_ids(const Seeds& seeds) {
  const std::string ids = read_file(fixture("goldens/tiny/calib_generic.ids")).substr(0, 512);
  const auto vocab = [](std::int32_t n) {
    return std::string(reinterpret_cast<const char*>(&n), sizeof n);
  };
  seeds.add("ids", "tiny", vocab(2048) + ids);
  seeds.add("ids", "too-small-vocab", vocab(100) + ids);
}

}  // namespace

void add_io_seeds(const Seeds& seeds) {
  add_safetensors(seeds);
  add_safetensors_index(seeds);
  add_model_configs(seeds);
  add_recipes(seeds);
  add_calibration_sources(seeds);
  add_ids(seeds);
}

}  // namespace ptq::fuzz
