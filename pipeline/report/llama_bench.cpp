#include "pipeline/report/llama_bench.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io/error.hpp"

extern char** environ;

namespace ptq {
namespace {

// The child's standard output; stderr goes to /dev/null. No shell: the
// arguments reach the program as they are.
std::string run_capture(const std::vector<std::string>& args, int& status) {
  int out[2];
  if (pipe(out) != 0) throw input_error(args[0], "a pipe to read its output", "pipe() failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string text;
  if (spawned == 0) {
    char buf[4096];
    for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    waitpid(pid, &status, 0);
  }
  close(out[0]);
  if (spawned != 0) throw input_error(args[0], "an executable llama-bench", "it could not be started");
  return text;
}

}  // namespace

LlamaBenchResult run_llama_bench(const std::filesystem::path& llama_bench,
                                 const std::filesystem::path& gguf, int threads) {
  std::vector<std::string> args = {llama_bench.string(), "-m", gguf.string(), "-p", "512", "-n",
                                   "128", "-r", "3", "-o", "jsonl"};
  if (threads > 0) args.insert(args.end(), {"-t", std::to_string(threads)});
  int status = 0;
  std::istringstream lines(run_capture(args, status));
  LlamaBenchResult r;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("avg_ts")) continue;
    if (j.value("n_prompt", 0) > 0) r.prompt_tps = j["avg_ts"].get<double>();
    if (j.value("n_gen", 0) > 0) r.generation_tps = j["avg_ts"].get<double>();
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || r.prompt_tps == 0 || r.generation_tps == 0)
    throw input_error(llama_bench.string() + " -m " + gguf.string(),
                      "JSON lines with the prompt and generation speeds",
                      "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                          " and no speeds");
  return r;
}

}  // namespace ptq
