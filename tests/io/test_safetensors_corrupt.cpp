// Deliberately corrupted safetensors files and shard indexes: each must be
// refused with an InputError naming the file, the tensor and what was wrong.
// (CI reruns these under AddressSanitizer: --gtest_filter='*Corrupt*:*Hostile*'.)
#include <gtest/gtest.h>

#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

// Writes a raw file with the given header and `data_bytes` zero bytes of data.
fs::path corrupt_file(const std::string& header, std::size_t data_bytes = 16,
                      std::uint64_t claimed_length = UINT64_MAX) {
  const auto path = test::temp_dir("st") / "bad.safetensors";
  test::write_raw_safetensors(path, header, std::string(data_bytes, '\0'), claimed_length);
  return path;
}

void expect_open_fails(const fs::path& path, std::initializer_list<std::string> needles) {
  test::expect_input_error([&] { SafetensorsFile::open(path); }, needles);
}

TEST(SafetensorsCorrupt, ShorterThanLengthPrefix) {
  const auto path = test::temp_dir("st") / "short.safetensors";
  test::write_text(path, "abc");
  expect_open_fails(path, {"short.safetensors", "at least 8 bytes", "found 3 bytes"});
  test::write_text(path, "");
  expect_open_fails(path, {"short.safetensors", "found 0 bytes"});
}

TEST(SafetensorsCorrupt, HeaderLengthBeyondFile) {
  expect_open_fails(corrupt_file("{}", 0, 1000),
                    {"bad.safetensors", "header length at most 2", "found header length 1000"});
}

TEST(SafetensorsHostile, HeaderLengthNearUint64MaxDoesNotWrap) {
  expect_open_fails(corrupt_file("{}", 0, UINT64_MAX - 4), {"header length at most 2"});
}

TEST(SafetensorsCorrupt, HeaderNotJson) {
  expect_open_fails(corrupt_file("{\"w\": {\"dtype\": "),
                    {"bad.safetensors: header", "valid JSON"});
}

TEST(SafetensorsCorrupt, HeaderNotObject) {
  expect_open_fails(corrupt_file("[1, 2]"), {"bad.safetensors: header", "a JSON object", "array"});
}

TEST(SafetensorsCorrupt, MissingDtypeField) {
  expect_open_fails(corrupt_file(R"({"w": {"shape": [2], "data_offsets": [0, 4]}})"),
                    {"bad.safetensors: tensor \"w\"", "field \"dtype\"", "found none"});
}

TEST(SafetensorsCorrupt, UnknownDtype) {
  expect_open_fails(
      corrupt_file(R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})"),
      {"tensor \"w\" dtype", "one of F64, F32", "found string \"F8_E4M3\""});
}

TEST(SafetensorsCorrupt, NegativeShape) {
  expect_open_fails(
      corrupt_file(R"({"w": {"dtype": "F16", "shape": [2, -2], "data_offsets": [0, 8]}})"),
      {"tensor \"w\" shape", "non-negative integer dimensions", "-2"});
}

TEST(SafetensorsHostile, HugeShapeOverflowIsCaught) {
  // 2^32 * 2^32 * 2 bytes wraps a 64-bit product to 0 = the claimed size.
  expect_open_fails(
      corrupt_file(
          R"({"w": {"dtype": "F16", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
      {"tensor \"w\" shape", "fit in 64 bits"});
}

TEST(SafetensorsCorrupt, ShapeNotArrayOfIntegers) {
  expect_open_fails(
      corrupt_file(R"({"w": {"dtype": "F16", "shape": [2.5], "data_offsets": [0, 4]}})"),
      {"tensor \"w\" shape", "non-negative integer dimensions", "2.5"});
}

TEST(SafetensorsCorrupt, SizeDisagreesWithDtypeTimesShape) {
  expect_open_fails(
      corrupt_file(R"({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 6]}})"),
      {"tensor \"w\"", "expected 8 bytes (F16 x shape)", "found 6 bytes"});
}

TEST(SafetensorsCorrupt, OffsetsPastEndOfData) {
  expect_open_fails(
      corrupt_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", 16),
      {"tensor \"w\" data_offsets", "end <= 16", "[8,24]"});
}

TEST(SafetensorsCorrupt, TruncatedFile) {
  const auto dir = test::temp_dir("st");
  const std::vector<std::byte> data(64);
  const std::vector<TensorToWrite> one{{"layer.weight", DType::F32, {4, 4}, data}};
  write_safetensors(dir / "t.safetensors", one);
  fs::resize_file(dir / "t.safetensors", fs::file_size(dir / "t.safetensors") - 10);
  expect_open_fails(dir / "t.safetensors",
                    {"t.safetensors: tensor \"layer.weight\" data_offsets", "end <= 54"});
}

TEST(SafetensorsCorrupt, BeginAfterEnd) {
  expect_open_fails(corrupt_file(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}})"),
                    {"tensor \"w\" data_offsets", "begin <= end", "[4,2]"});
}

TEST(SafetensorsCorrupt, OffsetsIllTyped) {
  expect_open_fails(corrupt_file(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0]}})"),
                    {"tensor \"w\" data_offsets", "[begin, end]"});
  expect_open_fails(corrupt_file(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": "0-2"}})"),
                    {"tensor \"w\" data_offsets", "string"});
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  expect_open_fails(
      corrupt_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})"),
      {"bad.safetensors: tensor \"b\"", "not overlapping", "overlap with tensor \"a\""});
}

TEST(SafetensorsCorrupt, DuplicateTensorName) {
  expect_open_fails(corrupt_file(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                    "w": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})"),
                    {"bad.safetensors: header", "unique object keys", "key \"w\" twice"});
}

TEST(SafetensorsCorrupt, MetadataNotStringToString) {
  expect_open_fails(corrupt_file(R"({"__metadata__": {"format": "pt", "n": 5}})"),
                    {"__metadata__ key \"n\"", "a string value", "integer 5"});
  expect_open_fails(corrupt_file(R"({"__metadata__": ["pt"]})"),
                    {"__metadata__", "an object of strings"});
}

TEST(SafetensorsHostile, DeeplyNestedHeaderIsRefusedWithoutRecursion) {
  const std::size_t depth = 200000;
  expect_open_fails(corrupt_file(std::string(depth, '[') + std::string(depth, ']')),
                    {"bad.safetensors: header", "JSON nested at most 128 deep", "deeper nesting"});
}

TEST(SafetensorsHostile, HugeFieldValueIsShortenedInMessage) {
  const std::string dtype(100000, 'X');
  try {
    SafetensorsFile::open(corrupt_file(R"({"w": {"dtype": ")" + dtype +
                                       R"(", "shape": [], "data_offsets": [0, 0]}})"));
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor \"w\" dtype"), std::string::npos) << e.what();
    EXPECT_LT(std::string(e.what()).size(), 400u);
  }
}

// --- Checkpoint folders and shard indexes ---

// Two valid shards; the index text is left to each test.
fs::path two_shards() {
  const auto dir = test::temp_dir("ckpt");
  const std::vector<std::byte> data(8);
  const std::vector<TensorToWrite> a{{"a", DType::F32, {2}, data}};
  const std::vector<TensorToWrite> b{{"b", DType::F16, {4}, data}};
  write_safetensors(dir / "s1.safetensors", a);
  write_safetensors(dir / "s2.safetensors", b);
  return dir;
}

void expect_checkpoint_fails(const fs::path& path, std::initializer_list<std::string> needles) {
  test::expect_input_error([&] { Checkpoint::open(path); }, needles);
}

TEST(CheckpointCorrupt, IndexNamesMissingShard) {
  const auto dir = two_shards();
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "s1.safetensors", "b": "s3.safetensors"}})");
  expect_checkpoint_fails(
      dir, {"model.safetensors.index.json", "shard \"s3.safetensors\" to exist", "No such file"});
}

TEST(CheckpointCorrupt, IndexTensorAbsentFromItsShard) {
  const auto dir = two_shards();
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})");
  expect_checkpoint_fails(
      dir, {"model.safetensors.index.json: tensor \"b\"", "present in shard s1.safetensors"});
}

TEST(CheckpointCorrupt, TensorInTwoShards) {
  const auto dir = two_shards();
  const std::vector<std::byte> data(8);
  const std::vector<TensorToWrite> dup{{"a", DType::F32, {2}, data}};
  write_safetensors(dir / "s2.safetensors", dup);
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "s1.safetensors", "x": "s2.safetensors"}})");
  expect_checkpoint_fails(dir, {"tensor \"a\"", "each tensor in one shard", "s1.safetensors"});
}

TEST(CheckpointCorrupt, IndexShardOutsideFolder) {
  const auto dir = two_shards();
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "../s1.safetensors"}})");
  expect_checkpoint_fails(
      dir, {"model.safetensors.index.json", "plain file names", "\"../s1.safetensors\""});
}

TEST(CheckpointCorrupt, IndexWithoutWeightMap) {
  const auto dir = two_shards();
  test::write_text(dir / "model.safetensors.index.json",
                   R"({"metadata": {}, "weight_map": ["s1.safetensors"]})");
  expect_checkpoint_fails(dir, {"model.safetensors.index.json", "\"weight_map\" object"});
  test::write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"a": 1}})");
  expect_checkpoint_fails(dir, {"weight_map \"a\"", "shard file name string", "integer 1"});
}

TEST(CheckpointCorrupt, PickledCheckpointIsRefusedWithAdvice) {
  const auto dir = test::temp_dir("ckpt");
  test::write_text(dir / "pytorch_model.bin", "PK\x03\x04 not really a zip");
  expect_checkpoint_fails(
      dir, {"pytorch_model.bin", "pickled checkpoints are not read", "safe_serialization=True"});
  expect_checkpoint_fails(dir / "pytorch_model.bin", {"pickled checkpoints are not read"});
}

TEST(CheckpointCorrupt, FolderWithoutWeights) {
  const auto dir = test::temp_dir("ckpt");
  expect_checkpoint_fails(dir,
                          {"model.safetensors or model.safetensors.index.json", "found neither"});
  expect_checkpoint_fails(dir / "nothing.safetensors", {"nothing.safetensors", "a readable file"});
}

}  // namespace
}  // namespace ptq
