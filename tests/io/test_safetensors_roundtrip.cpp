// write_safetensors -> SafetensorsFile/Checkpoint -> identical tensors and bytes.
#include <gtest/gtest.h>

#include <random>

#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

struct OwnedTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;

  TensorToWrite view() const { return {name, dtype, shape, data}; }
};

OwnedTensor random_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape,
                          std::mt19937& rng) {
  std::size_t bytes = dtype_size(dtype);
  for (auto d : shape) bytes *= static_cast<std::size_t>(d);
  std::vector<std::byte> data(bytes);
  for (auto& b : data) b = static_cast<std::byte>(rng() & 0xff);
  return {std::move(name), dtype, std::move(shape), std::move(data)};
}

std::vector<OwnedTensor> sample_tensors() {
  std::mt19937 rng(7);
  std::vector<OwnedTensor> t;
  t.push_back(random_tensor("b.weight", DType::F16, {3, 5}, rng));  // 30 bytes: next one unaligned
  t.push_back(random_tensor("a.weight", DType::F32, {4, 2}, rng));
  t.push_back(random_tensor("scalar", DType::BF16, {}, rng));
  t.push_back(random_tensor("empty", DType::I8, {0, 7}, rng));
  t.push_back(random_tensor("codes", DType::U8, {9}, rng));
  return t;
}

void expect_same(const TensorView& read, const OwnedTensor& written) {
  EXPECT_EQ(read.dtype, written.dtype) << written.name;
  EXPECT_EQ(read.shape, written.shape) << written.name;
  ASSERT_EQ(read.bytes.size(), written.data.size()) << written.name;
  EXPECT_TRUE(std::equal(read.bytes.begin(), read.bytes.end(), written.data.begin()))
      << written.name;
}

TEST(SafetensorsRoundTrip, WriteReadIdentical) {
  const auto dir = test::temp_dir("rt");
  const auto tensors = sample_tensors();
  std::vector<TensorToWrite> views;
  for (const auto& t : tensors) views.push_back(t.view());
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"quant", "w4 g128"}};
  write_safetensors(dir / "m.safetensors", views, metadata);

  auto file = SafetensorsFile::open(dir / "m.safetensors");
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(file->tensors()[i].name, tensors[i].name);  // header order = given order
    expect_same(*file->find(tensors[i].name), tensors[i]);
  }
  EXPECT_EQ(file->metadata(), metadata);
  EXPECT_EQ(file->find("missing"), nullptr);

  // Header padded to 8 bytes with spaces; no temporary file left behind.
  const std::string raw = test::read_bytes(dir / "m.safetensors");
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);

  // Rewriting what was read gives the same bytes (deterministic output).
  std::vector<TensorToWrite> reread;
  for (const auto& t : file->tensors()) reread.push_back({t.name, t.dtype, t.shape, t.bytes});
  write_safetensors(dir / "again.safetensors", reread, file->metadata());
  EXPECT_EQ(test::read_bytes(dir / "again.safetensors"), raw);
}

// The fixture was written by Hugging Face's safetensors; rewriting its tensors
// in header order must reproduce that file byte for byte.
TEST(SafetensorsRoundTrip, FixtureRewriteMatchesHuggingFaceBytes) {
  const auto src = test::fixture("models/tiny/model.safetensors");
  auto file = SafetensorsFile::open(src);
  std::vector<TensorToWrite> views;
  for (const auto& t : file->tensors()) views.push_back({t.name, t.dtype, t.shape, t.bytes});
  const auto dir = test::temp_dir("rt");
  write_safetensors(dir / "tiny.safetensors", views, file->metadata());
  const Checkpoint copy = Checkpoint::open(dir / "tiny.safetensors");
  for (const auto& t : file->tensors()) {
    const TensorView& c = copy.require(t.name);
    EXPECT_EQ(c.shape, t.shape);
    EXPECT_TRUE(std::equal(c.bytes.begin(), c.bytes.end(), t.bytes.begin(), t.bytes.end()))
        << t.name;
  }
  EXPECT_TRUE(test::read_bytes(dir / "tiny.safetensors") == test::read_bytes(src));
}

TEST(SafetensorsRoundTrip, ShardedCheckpoint) {
  const auto dir = test::temp_dir("shards");
  const auto tensors = sample_tensors();
  std::vector<TensorToWrite> first{tensors[0].view(), tensors[1].view()};
  std::vector<TensorToWrite> second{tensors[2].view(), tensors[3].view(), tensors[4].view()};
  write_safetensors(dir / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir / "model-00002-of-00002.safetensors", second);
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"metadata": {"total_size": 47}, "weight_map": {
    "b.weight": "model-00001-of-00002.safetensors", "a.weight": "model-00001-of-00002.safetensors",
    "scalar": "model-00002-of-00002.safetensors", "empty": "model-00002-of-00002.safetensors",
    "codes": "model-00002-of-00002.safetensors"}})");

  const Checkpoint ckpt = Checkpoint::open(dir);
  std::vector<std::string> names;
  for (const TensorView* t : ckpt.tensors()) names.push_back(t->name);
  EXPECT_EQ(names, (std::vector<std::string>{"a.weight", "b.weight", "codes", "empty", "scalar"}));
  std::uint64_t total = 0;
  for (const auto& t : tensors) {
    expect_same(ckpt.require(t.name), t);
    total += t.data.size();
  }
  EXPECT_EQ(ckpt.total_bytes(), total);
  EXPECT_EQ(ckpt.require("scalar").file.filename(), "model-00002-of-00002.safetensors");
  test::expect_input_error([&] { ckpt.require("nope"); },
                           {"tensor nope", "expected present", "missing"});
}

TEST(SafetensorsRoundTrip, FailedWriteLeavesNothingAndOverwriteReplaces) {
  const auto dir = test::temp_dir("w");
  const auto tensors = sample_tensors();
  std::vector<TensorToWrite> views;
  for (const auto& t : tensors) views.push_back(t.view());
  test::expect_input_error([&] { write_safetensors(dir / "missing" / "m.safetensors", views); },
                           {"missing/m.safetensors", "expected an existing parent folder"});
  EXPECT_TRUE(std::filesystem::is_empty(dir));

  test::write_text(dir / "m.safetensors", "old contents");
  write_safetensors(dir / "m.safetensors", views);
  EXPECT_EQ(SafetensorsFile::open(dir / "m.safetensors")->tensors().size(), tensors.size());
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(SafetensorsRoundTrip, ToFloatConvertsHalf) {
  const auto dir = test::temp_dir("f");
  const std::vector<float> values{0.5f, -3.0f, 1024.0f};
  std::vector<std::byte> data(values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t h = float_to_half(values[i]);
    std::memcpy(data.data() + 2 * i, &h, 2);
  }
  const std::vector<TensorToWrite> one{{"x", DType::F16, {3}, data}};
  write_safetensors(dir / "x.safetensors", one);
  auto file = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(file->find("x")->to_float(), values);
}

}  // namespace
}  // namespace ptq
