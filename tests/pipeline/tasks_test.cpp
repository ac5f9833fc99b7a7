// Multiple-choice tasks against the goldens of shared/fixtures (HF transformers
// float32 log-likelihoods, reference accuracies) and an unbatched reference.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "calibrate/logprobs.hpp"
#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "pipeline/eval/tasks.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr double golden_loglik_tolerance = 1e-3;  // PROTOCOL.md: 1e-3 nats absolute
constexpr int golden_items = 200;                 // items per task in goldens/<m>/tasks.json
constexpr int fast_items = 50;                    // items per task checked in ctest
const std::string task_names[] = {"hellaswag_val", "arc_easy_test", "arc_challenge_test",
                                  "piqa_valid"};

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

Task fixture_task(const std::string& name, int limit) {
  return load_task(test::fixture("tasks/" + name + ".jsonl"), limit);
}

class TinyTasks : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(Model::open(test::fixture("models/tiny")));
    tokenizer_ = new Tokenizer(Tokenizer::load(test::fixture("models/tiny")));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static const Model* model_;
  static const Tokenizer* tokenizer_;
};
const Model* TinyTasks::model_ = nullptr;
const Tokenizer* TinyTasks::tokenizer_ = nullptr;

TEST_P(TinyTasks, LogLikelihoodsMatchGoldens) {
  const Task task = fixture_task(GetParam(), fast_items);
  const nlohmann::json golden = read_json(test::fixture("goldens/tiny/tasks.json"))[GetParam()];
  const std::vector<TokenizedItem> tokens = tokenize_task(task, *tokenizer_);
  const std::vector<ItemScore> scores = score_task(*model_, task, tokens, TaskEvalConfig{});
  ASSERT_EQ(scores.size(), static_cast<std::size_t>(fast_items));
  double worst = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const nlohmann::json& g = golden[i];
    ASSERT_EQ(g["id"].get<std::string>(), task.items[i].id);
    ASSERT_EQ(g["loglik"].size(), scores[i].choices.size()) << task.items[i].id;
    for (std::size_t c = 0; c < scores[i].choices.size(); ++c) {
      EXPECT_EQ(scores[i].choices[c].tokens, g["cont_tokens"][c].get<int>()) << task.items[i].id;
      const double err = std::abs(scores[i].choices[c].loglik - g["loglik"][c].get<double>());
      EXPECT_LT(err, golden_loglik_tolerance) << task.items[i].id << " choice " << c;
      worst = std::max(worst, err);
    }
  }
  RecordProperty("max_abs_error_nats", std::to_string(worst));
}

// Grouping and right padding must not change a score: compare with each
// sequence run alone, unpadded, through the plain forward.
TEST_P(TinyTasks, BatchedScoresMatchOneSequenceAtATime) {
  const Task task = fixture_task(GetParam(), 3);
  const std::vector<TokenizedItem> tokens = tokenize_task(task, *tokenizer_);
  const std::vector<ItemScore> scores = score_task(*model_, task, tokens, TaskEvalConfig{});
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    for (std::size_t c = 0; c < tokens[i].continuations.size(); ++c) {
      std::vector<std::int32_t> seq = tokens[i].context;
      const auto& cont = tokens[i].continuations[c];
      seq.insert(seq.end(), cont.begin(), cont.end());
      const MatrixRM l = logits(*model_, seq, static_cast<int>(seq.size()));
      double expected = 0.0;
      for (std::size_t j = 0; j < cont.size(); ++j) {
        const auto row = static_cast<Eigen::Index>(tokens[i].context.size() + j - 1);
        expected += token_logprob({l.row(row).data(), static_cast<std::size_t>(l.cols())}, cont[j]);
      }
      EXPECT_NEAR(scores[i].choices[c].loglik, expected, 1e-4) << task.items[i].id << " " << c;
    }
  }
}

// Fixed-size chunks and single-threaded BLAS (algorithms/parallel_gemm.hpp):
// scores are bit-identical for any thread count.
TEST_P(TinyTasks, ScoresDoNotDependOnThreadCount) {
  const Task task = fixture_task(GetParam(), 4);
  auto scores_with = [&](int threads) {
    const ThreadScope scope(threads);
    return score_task(*model_, task, tokenize_task(task, *tokenizer_), TaskEvalConfig{});
  };
  const std::vector<ItemScore> one = scores_with(1), two = scores_with(2);
  for (std::size_t i = 0; i < one.size(); ++i) {
    for (std::size_t c = 0; c < one[i].choices.size(); ++c) {
      EXPECT_EQ(one[i].choices[c].loglik, two[i].choices[c].loglik) << task.items[i].id << " " << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TinyTasks, ::testing::ValuesIn(task_names));

// Scores of `task`'s items made of the golden log-likelihoods of `golden_name`.
std::vector<ItemScore> golden_scores(const std::string& model, const std::string& golden_name,
                                     const Task& task) {
  const nlohmann::json golden =
      read_json(test::fixture("goldens/" + model + "/tasks.json"))[golden_name];
  std::vector<ItemScore> scores(task.items.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    for (std::size_t c = 0; c < task.items[i].choices.size(); ++c) {
      scores[i].choices.push_back({golden[i]["loglik"][c].get<double>(),
                                   golden[i]["cont_tokens"][c].get<int>(),
                                   static_cast<int>(task.items[i].choices[c].size() + 1)});
    }
  }
  return scores;
}

// acc / acc_norm from the golden log-likelihoods must give reference.json's
// accuracies (independently computed), checking the argmax and byte rules.
TEST(TaskSummary, GoldenLogLikelihoodsGiveReferenceAccuracies) {
  for (const std::string model : {"tiny", "small"}) {
    const nlohmann::json ref = read_json(test::fixture("goldens/" + model + "/reference.json"));
    for (const std::string& name : task_names) {
      const Task task = fixture_task(name, golden_items);
      const std::vector<ItemScore> scores = golden_scores(model, name, task);
      const TaskResult r = summarize_task(task, scores, &scores);
      const nlohmann::json& expected = ref["task_" + name];
      EXPECT_EQ(r.items, expected["items"].get<int>());
      EXPECT_DOUBLE_EQ(r.acc, expected["acc"].get<double>()) << model << " " << name;
      EXPECT_DOUBLE_EQ(r.acc_norm, expected["acc_norm"].get<double>()) << model << " " << name;
      EXPECT_EQ(r.agree, 1.0);
      EXPECT_EQ(r.agree_norm, 1.0);
    }
  }
}

TEST(TaskFiles, HellaSwagTextLayoutMatchesJsonl) {
  const Task text = load_task(test::fixture("tasks/hellaswag_val_full.txt"), golden_items);
  const Task jsonl = load_task(test::fixture("tasks/hellaswag_val.jsonl"), golden_items);
  ASSERT_EQ(text.items.size(), static_cast<std::size_t>(golden_items));
  ASSERT_EQ(jsonl.items.size(), text.items.size());
  for (std::size_t i = 0; i < text.items.size(); ++i) {
    EXPECT_EQ(text.items[i].context, jsonl.items[i].context) << i;
    EXPECT_EQ(text.items[i].choices, jsonl.items[i].choices) << i;
    EXPECT_EQ(text.items[i].gold, jsonl.items[i].gold) << i;
  }
}

TEST(TaskFiles, FormatIsDetectedFromExtensionThenContent) {
  const auto dir = test::temp_dir("detect");
  std::ofstream(dir / "a.data") << "  {\"id\": \"x\"}\n";
  std::ofstream(dir / "b.data") << "context\n0\na\nb\nc\nd\n";
  EXPECT_EQ(detect_task_format(dir / "a.data"), TaskFormat::jsonl);
  EXPECT_EQ(detect_task_format(dir / "b.data"), TaskFormat::hellaswag_text);
  EXPECT_EQ(detect_task_format(test::fixture("tasks/piqa_valid.jsonl")), TaskFormat::jsonl);
  EXPECT_EQ(detect_task_format(test::fixture("tasks/hellaswag_val_full.txt")),
            TaskFormat::hellaswag_text);
}

// Writes `text` to a fresh file and expects load_task to throw an InputError
// whose message contains every one of `needles`.
void expect_load_error(const std::string& file_name, const std::string& text,
                       std::initializer_list<std::string> needles) {
  const auto path = test::temp_dir("corrupt") / file_name;
  std::ofstream(path, std::ios::binary) << text;
  try {
    load_task(path);
    ADD_FAILURE() << "no error for " << text;
  } catch (const InputError& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what() << " lacks " << n;
    }
  }
}

TEST(TaskFiles, MalformedJsonlNamesFileLineAndExpectation) {
  const std::string good = R"({"id": "a", "context": "c", "choices": ["x", "y"], "gold": 1})";
  expect_load_error("t.jsonl", good + "\n{\"id\": \"b\",\n", {"t.jsonl:2", "valid JSON"});
  expect_load_error("t.jsonl", good + "\n\n" + R"({"id": "b", "context": "c", "choices": ["x"], "gold": 0})",
                    {"t.jsonl:3", "at least two"});
  expect_load_error("t.jsonl", R"({"id": "a", "context": "c", "choices": ["x", "y"], "gold": 2})",
                    {"t.jsonl:1", "\"gold\"", "[0, 2)", "found 2"});
  expect_load_error("t.jsonl", R"({"id": "a", "choices": ["x", "y"], "gold": 0})",
                    {"t.jsonl:1", "\"context\" field"});
  expect_load_error("t.jsonl", R"({"id": "a", "context": 5, "choices": ["x", "y"], "gold": 0})",
                    {"t.jsonl:1", "\"context\"", "a string", "integer"});
  expect_load_error("t.jsonl", R"({"id": "a", "context": "", "choices": ["x", "y"], "gold": 0})",
                    {"item a", "non-empty context"});
  expect_load_error("t.jsonl", "[1, 2]\n", {"t.jsonl:1", "a JSON object"});
  expect_load_error("t.jsonl", "\n\n", {"t.jsonl", "at least one item"});
}

TEST(TaskFiles, MalformedHellaSwagTextNamesFileLineAndExpectation) {
  expect_load_error("h.txt", "ctx\n4\na\nb\nc\nd\n", {"h.txt:2", "[0, 4)", "found 4"});
  expect_load_error("h.txt", "ctx\nx1\na\nb\nc\nd\n", {"h.txt:2", "gold index"});
  expect_load_error("h.txt", "ctx\n1\na\nb\nc\nd\nctx2\n0\n", {"h.txt", "multiple of 6", "8"});
}

TEST(TaskFiles, LimitReadsTheFirstItems) {
  const Task all = fixture_task("arc_challenge_test", 0);
  const Task some = fixture_task("arc_challenge_test", 7);
  EXPECT_EQ(all.items.size(), 1172u);  // PROTOCOL.md: ARC-Challenge test
  ASSERT_EQ(some.items.size(), 7u);
  EXPECT_EQ(some.items[6].id, all.items[6].id);
  EXPECT_EQ(some.name, "arc_challenge_test");
}

// The CLI end to end (tasks only, no perplexity): its accuracies against those
// of the golden log-likelihoods, and full agreement with itself as reference.
TEST(TaskCli, WritesTaskAccuraciesMatchingGoldens) {
  constexpr int items = 8;
  const auto json_path = test::temp_dir("cli") / "eval.json";
  const std::string tiny = test::fixture("models/tiny").string();
  const std::string cmd = test::ptq_binary().string() + " eval --model " + tiny + " --reference " +
                          tiny + " --tasks " + test::fixture("tasks/piqa_valid.jsonl").string() +
                          " " + test::fixture("tasks/hellaswag_val_full.txt").string() +
                          " --limit " + std::to_string(items) + " --threads 2 --json " +
                          json_path.string() + " 2>/dev/null >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const nlohmann::json j = read_json(json_path);
  EXPECT_FALSE(j.contains("ppl"));
  const std::pair<std::string, std::string> runs[] = {{"piqa_valid", "piqa_valid"},
                                                       {"hellaswag_val_full", "hellaswag_val"}};
  for (const auto& [name, golden_name] : runs) {
    const Task task = fixture_task(golden_name, items);
    const TaskResult expected = summarize_task(task, golden_scores("tiny", golden_name, task));
    const nlohmann::json& t = j.at("tasks").at(name);
    EXPECT_EQ(t.at("items").get<int>(), items);
    EXPECT_DOUBLE_EQ(t.at("acc").get<double>(), expected.acc) << name;
    EXPECT_DOUBLE_EQ(t.at("acc_norm").get<double>(), expected.acc_norm) << name;
    EXPECT_EQ(t.at("agree").get<double>(), 1.0);
    EXPECT_EQ(t.at("agree_norm").get<double>(), 1.0);
  }
}

TEST(TaskCli, NeitherIdsNorTasksIsAnInputErrorExit) {
  const std::string cmd = test::ptq_binary().string() + " eval --model " +
                          test::fixture("models/tiny").string() + " 2>/dev/null >/dev/null";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace ptq
