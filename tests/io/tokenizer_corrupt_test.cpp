// Deliberately corrupted tokenizer files and .ids files: each must give its own
// InputError naming the file, the expected and the found, never a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/error.hpp"
#include "io/ids_file.hpp"
#include "io/tokenizer.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

using nlohmann::json;

json tiny_tokenizer_json() {
  std::ifstream in(test::fixture("models/tiny/tokenizer.json"));
  return json::parse(in);
}

std::filesystem::path write_file(const std::string& contents) {
  const auto path = test::temp_dir("corrupt") / "tokenizer.json";
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

void expect_load_error(const std::string& contents, const std::string& message) {
  const auto path = write_file(contents);
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << "loaded without error; expected: " << message;
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    EXPECT_NE(what.find(message), std::string::npos) << what;
  }
}

TEST(TokenizerCorrupt, NotJson) {
  expect_load_error("{\"model\": {\"type\": \"BPE\",", "expected valid JSON, found a syntax error");
}

TEST(TokenizerCorrupt, MissingModelSection) {
  auto j = tiny_tokenizer_json();
  j.erase("model");
  expect_load_error(j.dump(), "expected a \"model\" object, found none");
}

TEST(TokenizerCorrupt, MergeWithUnknownToken) {
  auto j = tiny_tokenizer_json();
  j["model"]["merges"][3] = json::array({"Ġ", "NOT_A_TOKEN"});
  expect_load_error(j.dump(),
                    "merge #3 'Ġ NOT_A_TOKEN': expected tokens that are in the vocab, "
                    "found unknown token 'NOT_A_TOKEN'");
}

TEST(TokenizerCorrupt, VocabIdOutOfRange) {
  auto j = tiny_tokenizer_json();
  j["model"]["vocab"]["Ġthe"] = 70000;
  expect_load_error(j.dump(), "vocab token 'Ġthe': expected an id in [0, 2049), found id 70000");
}

TEST(TokenizerCorrupt, DuplicateVocabIds) {
  auto j = tiny_tokenizer_json();
  j["model"]["vocab"]["Ġthe"] = j["model"]["vocab"]["a"];
  const auto id = j["model"]["vocab"]["a"].get<int>();
  expect_load_error(j.dump(),
                    "vocab id " + std::to_string(id) + ": expected one token per id, found both");
}

TEST(TokenizerCorrupt, UnknownPreTokenizerRegex) {
  auto j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"},
                     {"pattern", {{"Regex", "\\w+|\\s+"}}},
                     {"behavior", "Isolated"},
                     {"invert", false}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  expect_load_error(
      j.dump(),
      "pre_tokenizer Split pattern: expected the GPT-2, Llama 3 or Qwen2 regex, found '\\w+|\\s+'");
}

TEST(TokenizerCorrupt, ByteLevelVocabMissingAByte) {
  auto j = tiny_tokenizer_json();
  j["model"]["vocab"].erase("Ā");  // byte 0x00's character
  j["model"]["merges"] = json::array();
  expect_load_error(
      j.dump(),
      "byte-level vocab: expected a token for each of the 256 byte characters, found 'Ā' missing");
}

TEST(IdsFile, RoundTrip) {
  const auto path = test::temp_dir("ids") / "x.ids";
  const std::vector<std::int32_t> ids{0, 1, -5, 2047, 123456789};
  write_ids(path, ids);
  EXPECT_EQ(std::filesystem::file_size(path), ids.size() * 4);
  EXPECT_EQ(read_ids(path), ids);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
}

TEST(IdsFile, CorruptOddSize) {
  const auto path = test::temp_dir("ids") / "odd.ids";
  std::ofstream(path, std::ios::binary) << "1234567";
  try {
    read_ids(path);
    ADD_FAILURE() << "read an .ids file of 7 bytes";
  } catch (const InputError& e) {
    EXPECT_NE(
        std::string(e.what()).find(
            path.string() + ": expected a size that is a multiple of 4 (int32 ids), found 7 bytes"),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ptq
