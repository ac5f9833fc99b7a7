// llama.cpp's GGUF imatrix: the fixture reads as llama-imatrix wrote it,
// write_imatrix gives back its bytes, llama-quantize accepts what we write and
// quantizes with it exactly as with the original, and broken imatrices are
// refused naming the file and the tensor.
#include "io/imatrix.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include "io/gguf.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t kF16 = 1;
constexpr int kBlocks = 4;  // tiny's layers
const char* const kWeights[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                "ffn_gate", "ffn_up", "ffn_down"};

fs::path imatrix_fixture() { return test::fixture("gguf/tiny-imatrix.gguf"); }
fs::path llama_quantize() { return test::shared_dir() / "tools/llama.cpp/llama-quantize"; }

TEST(ImatrixRead, TinyFixtureHasEveryLinearOfEveryBlock) {
  const Imatrix im = read_imatrix(imatrix_fixture());
  EXPECT_EQ(im.datasets, std::vector<std::string>{"/work/peers/imatrix_calib.txt"});
  EXPECT_EQ(im.chunk_count, 128u);
  EXPECT_EQ(im.chunk_size, 512u);
  ASSERT_EQ(im.entries.size(), kBlocks * std::size(kWeights));
  for (int b = 0; b < kBlocks; ++b) {
    for (const char* w : kWeights) {
      const std::string name = "blk." + std::to_string(b) + "." + w + ".weight";
      SCOPED_TRACE(name);
      const auto it = im.entries.find(name);
      ASSERT_NE(it, im.entries.end());
      EXPECT_EQ(it->second.n_matrices(), 1u);
      EXPECT_EQ(it->second.n_columns(), std::string(w) == "ffn_down" ? 768u : 256u);
      EXPECT_EQ(it->second.counts[0], 128.0f * 512.0f);  // every token of every chunk
    }
  }
  // Row lookups, norms and the output head (without --process-output) have none.
  EXPECT_FALSE(im.importance("token_embd.weight").has_value());
  EXPECT_FALSE(im.importance("output.weight").has_value());
  EXPECT_FALSE(im.importance("blk.0.attn_norm.weight").has_value());
}

TEST(ImatrixRead, ImportanceIsTheMeanSquarePerColumn) {
  const Imatrix im = read_imatrix(imatrix_fixture());
  const ImatrixEntry& e = im.entries.at("blk.2.ffn_down.weight");
  const auto importance = im.importance("blk.2.ffn_down.weight");
  ASSERT_TRUE(importance.has_value());
  ASSERT_EQ(importance->size(), 768u);
  for (std::size_t i = 0; i < importance->size(); ++i) {
    EXPECT_EQ((*importance)[i], e.in_sum2[i] / 65536.0f) << i;  // exactly llama's float division
    EXPECT_GT((*importance)[i], 0.0f) << i;
  }
}

TEST(ImatrixRead, ImportancePerExpertRoundsCountsAndFillsUnseenExpertsWithOnes) {
  Imatrix im;
  im.entries["blk.0.ffn_up_exps.weight"] = {{1, 2, 3, 4, 5, 6}, {2.4f, 0.4f, 4.0f}};
  const auto importance = im.importance("blk.0.ffn_up_exps.weight");
  ASSERT_TRUE(importance.has_value());
  // Expert 0: count 2.4 -> 2; expert 1: 0.4 -> 0, no tokens -> ones; expert 2: 4.
  EXPECT_EQ(*importance, (std::vector<float>{0.5f, 1.0f, 1.0f, 1.0f, 1.25f, 1.5f}));
}

TEST(ImatrixWrite, WritingBackWhatWasReadGivesTheSameBytes) {
  const auto out = test::temp_dir("imatrix") / "imatrix.gguf";
  write_imatrix(out, read_imatrix(imatrix_fixture()));
  EXPECT_TRUE(test::read_bytes(out) == test::read_bytes(imatrix_fixture()));
}

TEST(ImatrixWrite, RoundTripsExpertsAndMetadata) {
  Imatrix im;
  im.datasets = {"generic.ids", "domain.ids"};
  im.chunk_count = 3;
  im.chunk_size = 16;
  im.entries["blk.0.ffn_gate_exps.weight"] = {{1, 2, 3, 4, 5, 6, 7, 8}, {3, 0}};
  im.entries["blk.0.attn_q.weight"] = {{0.5f, 0.25f}, {48}};
  const auto path = test::temp_dir("imatrix") / "experts.gguf";
  write_imatrix(path, im);

  const auto file = gguf::File::open(path);
  EXPECT_EQ(file->require("general.type").as_string("type"), "imatrix");
  EXPECT_EQ(file->require_tensor("blk.0.ffn_gate_exps.weight.in_sum2").ne,
            (std::vector<std::int64_t>{4, 2}));
  EXPECT_EQ(file->require_tensor("blk.0.ffn_gate_exps.weight.counts").ne,
            (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(file->require_tensor("blk.0.attn_q.weight.counts").ne, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(file->tensors().front().name, "blk.0.attn_q.weight.in_sum2");  // name order

  const Imatrix back = read_imatrix(path);
  EXPECT_EQ(back.datasets, im.datasets);
  EXPECT_EQ(back.chunk_count, 3u);
  EXPECT_EQ(back.chunk_size, 16u);
  ASSERT_EQ(back.entries.size(), 2u);
  for (const auto& [name, entry] : im.entries) {
    EXPECT_EQ(back.entries.at(name).in_sum2, entry.in_sum2) << name;
    EXPECT_EQ(back.entries.at(name).counts, entry.counts) << name;
  }
}

TEST(ImatrixWrite, RefusesEntriesThatDoNotFit) {
  const auto path = test::temp_dir("imatrix") / "out.gguf";
  Imatrix im;
  test::expect_input_error([&] { write_imatrix(path, im); },
                           {"out.gguf", "at least one tensor entry"});
  im.entries["w"] = {{1, 2, 3}, {1, 1}};
  test::expect_input_error([&] { write_imatrix(path, im); },
                           {"out.gguf: tensor \"w\"", "found 3 in_sum2 values and 2 counts"});
  im.entries["w"] = {{1, std::nanf("")}, {1}};
  test::expect_input_error([&] { write_imatrix(path, im); },
                           {"tensor \"w\" in_sum2 element 1", "a finite value >= 0"});
  EXPECT_FALSE(fs::exists(path));
}

// ---------------------------------------------------------------- llama-quantize

// Runs llama-quantize --pure --imatrix on tiny-f16 to Q4_K with one thread.
void quantize_with(const fs::path& imatrix, const fs::path& out) {
  const std::string command = llama_quantize().string() + " --pure --imatrix " + imatrix.string() +
                              " " + test::fixture("gguf/tiny-f16.gguf").string() + " " +
                              out.string() + " Q4_K 1 > " + out.string() + ".log 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_bytes(out.string() + ".log");
}

TEST(ImatrixLlamaQuantize, QuantizesWithOurFileExactlyAsWithTheOriginal) {
  if (!fs::exists(llama_quantize())) GTEST_SKIP() << "no " << llama_quantize();
  const auto dir = test::temp_dir("imatrix");
  write_imatrix(dir / "ours.gguf", read_imatrix(imatrix_fixture()));
  quantize_with(dir / "ours.gguf", dir / "q4_k.gguf");
  // tiny-Q4_K-imatrix.gguf is the same command with the original file; only
  // the recorded imatrix path differs, so compare the tensors.
  const auto ours = gguf::File::open(dir / "q4_k.gguf");
  const auto reference = gguf::File::open(test::fixture("gguf/tiny-Q4_K-imatrix.gguf"));
  EXPECT_EQ(ours->require("quantize.imatrix.entries_count").as_int("entries"), 28);
  ASSERT_EQ(ours->tensors().size(), reference->tensors().size());
  for (const auto& t : reference->tensors()) {
    const auto& mine = ours->require_tensor(t.name);
    ASSERT_EQ(mine.data.size(), t.data.size()) << t.name;
    EXPECT_EQ(std::memcmp(mine.data.data(), t.data.data(), t.data.size()), 0) << t.name;
  }
}

TEST(ImatrixLlamaQuantize, AcceptsAnImatrixBuiltFromScratch) {
  if (!fs::exists(llama_quantize())) GTEST_SKIP() << "no " << llama_quantize();
  // ptq's statistics, shaped as llama.cpp names them: sum of x^2 per input
  // column of every linear weight, and the token count.
  const auto model = gguf::File::open(test::fixture("gguf/tiny-f16.gguf"));
  Imatrix im;
  im.datasets = {"calib_generic.ids"};
  im.chunk_count = 2;
  im.chunk_size = 512;
  for (const auto& t : model->tensors()) {
    if (t.type != kF16 || t.name == "token_embd.weight" || t.name == "output.weight") continue;
    ImatrixEntry& e = im.entries[t.name];
    for (std::int64_t i = 0; i < t.ne[0]; ++i) e.in_sum2.push_back(1024.0f + float(i % 7));
    e.counts = {1024};
  }
  ASSERT_EQ(im.entries.size(), 28u);
  const auto dir = test::temp_dir("imatrix");
  write_imatrix(dir / "scratch.gguf", im);
  quantize_with(dir / "scratch.gguf", dir / "q4_k.gguf");
  const auto out = gguf::File::open(dir / "q4_k.gguf");
  EXPECT_EQ(out->require("quantize.imatrix.dataset").as_string("dataset"), "calib_generic.ids");
  EXPECT_EQ(out->require("quantize.imatrix.chunks_count").as_int("chunks"), 2);
  EXPECT_NE(test::read_bytes(dir / "q4_k.gguf.log").find("loaded 28 importance matrix entries"),
            std::string::npos);
}

// ---------------------------------------------------------------- corrupted imatrices

struct Tensor {
  std::string name;
  std::vector<std::int64_t> ne;
  std::vector<float> values;
  std::uint32_t type = 0;  // F32
};

// A GGUF file (valid as GGUF) with the imatrix keys and the given tensors.
fs::path write_file(const std::vector<Tensor>& tensors, bool with_metadata = true) {
  std::vector<std::pair<std::string, gguf::Value>> metadata;
  if (with_metadata) {
    metadata = {{"imatrix.datasets", gguf::make_string_array({"d"})},
                {"imatrix.chunk_count", gguf::make_u32(1)},
                {"imatrix.chunk_size", gguf::make_u32(8)}};
  }
  std::vector<gguf::TensorToWrite> views;
  for (const auto& t : tensors) {
    const auto bytes = std::as_bytes(std::span(t.values));
    views.push_back({t.name, t.ne, t.type, t.type == 0 ? bytes : bytes.first(bytes.size() / 2)});
  }
  const auto path = test::temp_dir("imatrix") / "bad.gguf";
  gguf::write(path, metadata, views);
  return path;
}

void expect_refused(const fs::path& path, std::initializer_list<std::string> needles) {
  test::expect_input_error([&] { read_imatrix(path); }, needles);
}

TEST(ImatrixCorrupt, CountsWithoutSumsAndSumsWithoutCounts) {
  expect_refused(write_file({{"w.in_sum2", {2}, {1, 2}}}),
                 {"bad.gguf: tensor \"w.in_sum2\"", "a tensor \"w.counts\" beside it"});
  expect_refused(write_file({{"w.counts", {1}, {1}}}),
                 {"bad.gguf: tensor \"w.counts\"", "a tensor \"w.in_sum2\" beside it"});
}

TEST(ImatrixCorrupt, NotF32) {
  expect_refused(write_file({{"w.in_sum2", {2}, {1, 2}, kF16}, {"w.counts", {1}, {1}}}),
                 {"bad.gguf: tensor \"w.in_sum2\"", "F32 data", "found F16"});
}

TEST(ImatrixCorrupt, SumsNotAMultipleOfCounts) {
  expect_refused(write_file({{"w.in_sum2", {3}, {1, 2, 3}}, {"w.counts", {1, 2}, {1, 1}}}),
                 {"tensor \"w.in_sum2\"", "a multiple of the 2 counts", "found 3 values"});
}

TEST(ImatrixCorrupt, NegativeOrNonFiniteValues) {
  expect_refused(write_file({{"w.in_sum2", {2}, {1, 2}}, {"w.counts", {1}, {-1}}}),
                 {"tensor \"w.counts\" element 0", "a finite value >= 0", "found -1"});
  // ptq's writer refuses an infinity: a placeholder is patched in the file.
  const float placeholder = 12345.0f, inf = std::numeric_limits<float>::infinity();
  const fs::path path = write_file({{"w.in_sum2", {2}, {1, placeholder}}, {"w.counts", {1}, {1}}});
  std::string bytes = test::read_bytes(path);
  const auto at = bytes.find(std::string(reinterpret_cast<const char*>(&placeholder), 4));
  ASSERT_NE(at, std::string::npos);
  std::memcpy(bytes.data() + at, &inf, 4);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  expect_refused(path, {"tensor \"w.in_sum2\" element 1", "a finite value >= 0"});
}

TEST(ImatrixCorrupt, MissingOrMistypedMetadata) {
  expect_refused(write_file({{"w.in_sum2", {2}, {1, 2}}, {"w.counts", {1}, {1}}}, false),
                 {"bad.gguf", "metadata key \"imatrix.datasets\"", "found none"});
  const auto path = test::temp_dir("imatrix") / "typed.gguf";
  const float values[] = {1, 2, 3};
  const auto bytes = std::as_bytes(std::span(values));
  const std::vector<std::pair<std::string, gguf::Value>> metadata = {
      {"imatrix.datasets", gguf::make_string_array({"d"})},
      {"imatrix.chunk_count", gguf::make_i32(1)},
      {"imatrix.chunk_size", gguf::make_u32(8)}};
  const std::vector<gguf::TensorToWrite> tensors = {{"w.in_sum2", {2}, 0, bytes.first(8)},
                                                    {"w.counts", {1}, 0, bytes.last(4)}};
  gguf::write(path, metadata, tensors);
  expect_refused(path, {"typed.gguf: key \"imatrix.chunk_count\"", "a u32", "found i32"});
}

TEST(ImatrixCorrupt, NoEntries) {
  expect_refused(write_file({{"w.other", {2}, {1, 2}}}),
                 {"bad.gguf", "at least one in_sum2/counts tensor pair", "found none"});
}

}  // namespace
}  // namespace ptq
