// End to end: `ptq tokenize` reproduces the evaluation .ids goldens byte for byte.
#include <gtest/gtest.h>

#include <cstdlib>

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

}  // namespace
}  // namespace ptq
