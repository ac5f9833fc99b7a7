// Multiple-choice tasks of one fixture model against its goldens: per task the
// largest |ll - golden ll|, continuation token counts, acc/acc_norm against
// reference.json, and the scoring time. Prints Markdown table rows.
// Usage: bench_tasks <fixtures dir> <model name> [items per task = 200] [threads = 0: all]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "calibrate/threads.hpp"
#include "pipeline/eval/tasks.hpp"

namespace {

constexpr double loglik_tolerance = 1e-3;  // PROTOCOL.md: 1e-3 nats absolute
const char* const task_names[] = {"hellaswag_val", "arc_easy_test", "arc_challenge_test",
                                  "piqa_valid"};

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

struct Comparison {
  double max_error = 0.0;
  int over_tolerance = 0, token_mismatches = 0, choices = 0;
};

Comparison compare(const std::vector<ptq::ItemScore>& scores, const nlohmann::json& golden) {
  Comparison c;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    for (std::size_t k = 0; k < scores[i].choices.size(); ++k) {
      const double err = std::abs(scores[i].choices[k].loglik - golden[i]["loglik"][k].get<double>());
      c.max_error = std::max(c.max_error, err);
      c.over_tolerance += err >= loglik_tolerance;
      c.token_mismatches += scores[i].choices[k].tokens != golden[i]["cont_tokens"][k].get<int>();
      ++c.choices;
    }
  }
  return c;
}

void run(const std::filesystem::path& fixtures, const std::string& model_name, int items) {
  const auto model_dir = fixtures / "models" / model_name;
  const ptq::Model model = ptq::Model::open(model_dir);
  const ptq::Tokenizer tokenizer = ptq::Tokenizer::load(model_dir);
  const nlohmann::json golden = read_json(fixtures / "goldens" / model_name / "tasks.json");
  const nlohmann::json ref = read_json(fixtures / "goldens" / model_name / "reference.json");
  for (const std::string name : task_names) {
    const ptq::Task task = ptq::load_task(fixtures / "tasks" / (name + ".jsonl"), items);
    const auto start = std::chrono::steady_clock::now();
    const auto tokens = ptq::tokenize_task(task, tokenizer);
    auto scores = ptq::score_task(model, task, tokens, ptq::TaskEvalConfig{});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const Comparison c = compare(scores, golden[name]);
    const ptq::TaskResult r = ptq::summarize_task(task, std::move(scores));
    const nlohmann::json& expected = ref["task_" + name];
    std::printf("| %s | %s | %d | %d | %.2e | %d | %d | %.3f (%.3f) | %.3f (%.3f) | %.2f |\n",
                model_name.c_str(), name.c_str(), r.items, c.choices, c.max_error,
                c.over_tolerance, c.token_mismatches, r.acc, expected["acc"].get<double>(),
                r.acc_norm, expected["acc_norm"].get<double>(), seconds);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <fixtures dir> <model name> [items per task] [threads]\n",
                 argv[0]);
    return 2;
  }
  try {
    const ptq::ThreadScope threads(argc > 4 ? std::stoi(argv[4]) : 0);
    run(argv[1], argv[2], argc > 3 ? std::stoi(argv[3]) : 200);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tasks: %s\n", e.what());
    return 1;
  }
  return 0;
}
