// llama.cpp's vocabulary tests (tokenizers/gguf-vocab/ggml-vocab-*.gguf.inp/.out):
// .inp holds the texts, each followed by "\n__ggml_vocab_test__\n" (so a text's
// own leading/trailing newlines are kept); .out has one line of ids per text.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/tokenizer.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

struct VocabCase {
  std::string text;
  std::vector<std::int32_t> ids;
};

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<VocabCase> load_cases(const std::string& name) {
  const auto base = test::fixture("tokenizers/gguf-vocab/ggml-vocab-" + name + ".gguf");
  const std::string inp = read_all(base.string() + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  for (std::size_t pos = 0, next; (next = inp.find(sep, pos)) != std::string::npos;
       pos = next + sep.size()) {
    cases.push_back({inp.substr(pos, next - pos), {}});
  }
  std::istringstream out(read_all(base.string() + ".out"));
  std::string line;
  for (auto& c : cases) {
    EXPECT_TRUE(std::getline(out, line)) << name << ": fewer id lines than texts";
    std::istringstream ids(line);
    for (std::int32_t id; ids >> id;) c.ids.push_back(id);
  }
  EXPECT_FALSE(std::getline(out, line)) << name << ": more id lines than texts";
  EXPECT_EQ(cases.size(), 46u);
  return cases;
}

void expect_all_match(const Tokenizer& tok, const std::string& name) {
  for (const auto& c : load_cases(name))
    EXPECT_EQ(tok.encode(c.text), c.ids) << name << ": '" << c.text << "'";
}

TEST(GgufVocab, Gpt2MatchesLlamaCpp) {
  expect_all_match(Tokenizer::load(test::fixture("tokenizers/gpt2")), "gpt-2");
}

// Llama 2's tokenizer.json alone (no tokenizer_config.json naming its class):
// its own pipeline, Prepend("▁") + Replace(" ", "▁"), which is what llama.cpp runs.
Tokenizer llama2_own_pipeline() {
  const auto dir = test::temp_dir("gguf-vocab-llama2-tokenizer-json");
  std::filesystem::copy_file(test::fixture("tokenizers/llama2-hf/tokenizer.json"),
                             dir / "tokenizer.json");
  return Tokenizer::load(dir);
}

TEST(GgufVocab, LlamaSpmMatchesLlamaCpp) { expect_all_match(llama2_own_pipeline(), "llama-spm"); }

TEST(GgufVocab, LlamaBpeMatchesLlamaCpp) {
  const auto dir = test::fixture("tokenizers/llama3.2-bpe");
  const auto tok = Tokenizer::load_gpt2_files(dir / "encoder.json", dir / "vocab.bpe",
                                              {SplitRegex::llama3, WholeWordLookup::on});
  EXPECT_EQ(tok.vocab_size(), 128000);
  expect_all_match(tok, "llama-bpe");
}

// The Llama class as transformers v5 builds it (Phi-3's and Llama 2's
// tokenizer_config.json name it) adds no "▁" before a text that already starts
// with a space; llama.cpp always adds one. Exactly those texts differ, and
// there llama.cpp's ids are tokenizer.json's own (legacy) encoding.
class LlamaClassVsLlamaCpp : public testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(LlamaClassVsLlamaCpp, DiffersOnlyOnLeadingSpace) {
  const auto [fixture, vocab] = GetParam();
  const auto tok = Tokenizer::load(test::fixture(std::string("tokenizers/") + fixture));
  const auto legacy = llama2_own_pipeline();
  std::vector<std::string> differing;
  std::vector<std::string> starting_with_space;
  for (const auto& c : load_cases(vocab)) {
    if (c.text.starts_with(' ')) starting_with_space.push_back(c.text);
    if (tok.encode(c.text) != c.ids) {
      differing.push_back(c.text);
      EXPECT_EQ(legacy.encode(c.text), c.ids) << "'" << c.text << "'";
    }
  }
  EXPECT_EQ(differing, starting_with_space);
  EXPECT_EQ(differing.size(), 15u);  // counted in each .inp file
}

INSTANTIATE_TEST_SUITE_P(GgufVocab, LlamaClassVsLlamaCpp,
                         testing::Values(std::pair{"phi-3-mini-hf", "phi-3"},
                                         std::pair{"llama2-hf", "llama-spm"}),
                         [](const auto& info) {
                           return std::string(info.param.second) == "phi-3" ? "Phi3" : "Llama2";
                         });

}  // namespace
}  // namespace ptq
