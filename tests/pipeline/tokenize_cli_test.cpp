// End to end: `ptq tokenize` reproduces the evaluation .ids goldens byte for byte.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "test_paths.hpp"

namespace ptq {
namespace {

void expect_reproduces(const std::string& model, const std::string& text,
                       const std::string& golden) {
  const auto out = test::temp_dir("tokenize") / "out.ids";
  const std::string cmd = test::ptq_binary().string() + " tokenize --model " +
                          test::fixture("models/" + model).string() + " --text " +
                          test::fixture(text).string() + " --out " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto expected = test::read_bytes(test::fixture("goldens/" + model + "/" + golden));
  ASSERT_FALSE(expected.empty());
  EXPECT_TRUE(test::read_bytes(out) == expected) << model << " " << golden;
}

TEST(TokenizeCli, TinyGenericEval) {
  expect_reproduces("tiny", "corpus/generic_eval/wikitext2_test.txt", "eval_generic.ids");
}
TEST(TokenizeCli, TinyDomainEval) {
  expect_reproduces("tiny", "corpus/domain_eval/curl_code_heldout.txt", "eval_domain.ids");
}
TEST(TokenizeCli, SmallGenericEval) {
  expect_reproduces("small", "corpus/generic_eval/wikitext2_test.txt", "eval_generic.ids");
}
TEST(TokenizeCli, SmallDomainEval) {
  expect_reproduces("small", "corpus/domain_eval/curl_code_heldout.txt", "eval_domain.ids");
}

TEST(TokenizeCli, MissingTextFileIsAnInputError) {
  const auto out = test::temp_dir("tokenize") / "out.ids";
  const std::string cmd = test::ptq_binary().string() + " tokenize --model " +
                          test::fixture("models/tiny").string() +
                          " --text /nonexistent.txt --out " + out.string() + " 2>/dev/null";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 2);
  EXPECT_FALSE(std::filesystem::exists(out));
}

// A tokenizer_config.json naming a class whose pipeline differs from
// tokenizer.json's (tiny's vocabulary through Qwen2Tokenizer, as
// tests/data/tokenizer_classes/tiny-qwen2.json records): every command that
// tokenizes text says so once.
TEST(TokenizeCli, ATokenizerClassOtherThanTokenizerJsonIsNoted) {
  const auto dir = test::temp_dir("tokenize-class");
  const auto model = dir / "model";
  std::filesystem::create_directories(model);
  std::filesystem::copy_file(test::fixture("models/tiny/tokenizer.json"), model / "tokenizer.json");
  std::ofstream(model / "tokenizer_config.json") << R"({"tokenizer_class": "Qwen2Tokenizer"})";
  const auto text = test::fixture("corpus/generic_eval/wikitext2_test.txt");
  const std::string args = "tokenize --model " + model.string() + " --text " + text.string() +
                           " --out " + (dir / "out.ids").string();
  ASSERT_EQ(test::run_ptq(args, dir / "tokenize.log"), 0);
  const std::string log = test::read_bytes(dir / "tokenize.log");
  const auto first = log.find("note: ");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find("Qwen2Tokenizer", first), std::string::npos) << log;
  EXPECT_EQ(log.find("note: ", first + 1), std::string::npos) << log;
}

}  // namespace
}  // namespace ptq
