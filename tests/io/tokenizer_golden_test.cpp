// Every case of goldens/tokenizers.json (ids from Hugging Face transformers,
// add_special_tokens=False) must encode to exactly those ids and decode back.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/tokenizer.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

using nlohmann::json;

const json& goldens() {
  static const json j = [] {
    std::ifstream in(test::fixture("goldens/tokenizers.json"));
    return json::parse(in);
  }();
  return j;
}

// Texts whose ids do not decode back to the text in transformers either:
// Phi-3's decoder strips the leading space ("▁" prepended at encode, Strip at
// decode), so a text that starts with a space loses it; "</s>" has rstrip, so
// the whitespace after it is swallowed at encode.
bool round_trips(const std::string& model, const std::string& text) {
  if (model != "phi-3-mini-hf") return true;
  return !text.starts_with(' ') && text.find("</s>") == std::string::npos;
}

void check_model(const std::string& model, const std::filesystem::path& dir) {
  const auto tok = Tokenizer::load(dir);
  const auto& g = goldens().at(model);
  EXPECT_EQ(tok.vocab_size(), g.at("vocab_size").get<int>());
  int mismatches = 0;
  int round_trip_checked = 0;
  for (const auto& c : g.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    const auto expected = c.at("ids").get<std::vector<std::int32_t>>();
    const auto ids = tok.encode(text);
    if (ids != expected && ++mismatches <= 5) {
      ADD_FAILURE() << model << ": text '" << text.substr(0, 120) << "' encodes differently";
    }
    if (round_trips(model, text)) {
      ++round_trip_checked;
      EXPECT_EQ(tok.decode(expected), text) << model;
    }
  }
  EXPECT_EQ(mismatches, 0) << model;
  EXPECT_GT(round_trip_checked, 40) << model;  // phi-3: most texts start with a space
}

TEST(TokenizerGolden, Gpt2) { check_model("gpt2", test::fixture("tokenizers/gpt2")); }
TEST(TokenizerGolden, Phi3) {
  check_model("phi-3-mini-hf", test::fixture("tokenizers/phi-3-mini-hf"));
}
TEST(TokenizerGolden, Tiny) { check_model("tiny", test::fixture("models/tiny")); }
TEST(TokenizerGolden, Small) { check_model("small", test::fixture("models/small")); }

// A fixture's tokenizer.json with no tokenizer_config.json beside it: its own
// pipeline, whatever class the fixture's config names.
Tokenizer own_pipeline(const std::filesystem::path& fixture, const std::string& name) {
  const std::filesystem::path dir = test::temp_dir("tokenizer-json-alone-" + name);
  std::filesystem::copy_file(fixture / "tokenizer.json", dir / "tokenizer.json");
  return Tokenizer::load(dir);
}

// A fixture's tokenizer.json under its tokenizer_config.json with the golden's
// keys written over it (another class, or the Llama class's legacy switch), as
// tests/data/make_tokenizer_class_goldens.py built it in transformers v5
// (tests/data/tokenizer_classes/<name>.json): ptq runs the class's pipeline,
// encodes every text to transformers' ids and says that tokenizer.json's own
// pipeline differs.
class TokenizerClass : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerClass, EncodesAsTransformersV5BuildsTheClass) {
  std::ifstream in(test::source_dir() / "tests/data/tokenizer_classes" / (GetParam() + ".json"));
  const json g = json::parse(in);
  ASSERT_FALSE(g.contains("error")) << g.dump().substr(0, 400);
  const std::filesystem::path dir = test::temp_dir("tokenizer-class-" + GetParam());
  const std::filesystem::path source = test::fixture(g.at("fixture").get<std::string>());
  std::filesystem::copy_file(source / "tokenizer.json", dir / "tokenizer.json");
  json config = json::object();
  if (std::filesystem::exists(source / "tokenizer_config.json"))
    config = json::parse(test::read_bytes(source / "tokenizer_config.json"));
  config.update(g.at("config_overrides"));
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  const auto tok = Tokenizer::load(dir);
  EXPECT_EQ(!tok.pipeline_note().empty(), g.at("pipeline_differs_from_tokenizer_json").get<bool>())
      << tok.pipeline_note();
  int mismatches = 0, differ_from_own = 0;
  const auto own = own_pipeline(source, GetParam());
  for (const auto& c : g.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    const auto expected = c.at("ids").get<std::vector<std::int32_t>>();
    if (tok.encode(text) != expected && ++mismatches <= 5)
      ADD_FAILURE() << GetParam() << ": text '" << text.substr(0, 120) << "' encodes differently";
    differ_from_own += own.encode(text) != expected;
  }
  EXPECT_EQ(mismatches, 0) << GetParam();
  std::printf("%s: %d of %zu texts take other ids under tokenizer.json's own pipeline\n",
              GetParam().c_str(), differ_from_own, g.at("cases").size());
}

INSTANTIATE_TEST_SUITE_P(TokenizerGolden, TokenizerClass,
                         testing::Values("tiny-qwen2", "gpt2-qwen2", "gpt2-qwen2-fast",
                                         "llama2-llama", "llama2-llama-legacy", "llama2-gemma",
                                         "phi3-llama", "phi3-llama-fast", "phi3-gemma"),
                         test::FolderName());

}  // namespace
}  // namespace ptq
