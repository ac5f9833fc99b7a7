// ptq eval: perplexity of a checkpoint on a token file (KL/top-1 against a reference)
// and multiple-choice tasks (acc/acc_norm, agreement with a reference).
#include <cstdio>
#include <memory>
#include <optional>

#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "io/ids_file.hpp"
#include "io/output_path.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/cli/device_flag.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/eval/llamacpp_base.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/eval/tasks.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/output/progress.hpp"
#include "pipeline/recipe/text_tokenizer.hpp"

namespace ptq::cli {
namespace {

struct EvalOptions {
  std::string model, text_file, ids_file, json_out, reference, llamacpp_base, dump_logits;
  std::vector<std::string> task_files;
  int task_limit = 0;
  int threads = 0;
  std::string device = "cpu";
  bool int8_activations = false, dry_run = false;
  EvalConfig config;
};

void print_result(const EvalResult& r) {
  std::printf("ppl %.6f  nll_sum %.6f  predicted_tokens %lld  windows %d\n", r.ppl, r.nll_sum,
              static_cast<long long>(r.predicted_tokens), r.windows);
  if (r.kl) std::printf("kl %.6f  top1 %.6f\n", *r.kl, *r.top1);
}

// The whole text file tokenized as one string with the model's tokenizer
// (no BOS), or the ids file as is.
// Whose tokenizer.json tokenizes text: the model's folder, or for a GGUF model
// (which carries its vocabulary as metadata) the float reference's.
std::filesystem::path tokenizer_folder(const EvalOptions& o) {
  if (!gguf_model_file(o.model)) return o.model;
  if (o.reference.empty())
    throw input_error("--model " + o.model, "--reference (a folder with tokenizer.json) or --ids",
                      "a GGUF model and text to tokenize");
  return o.reference;
}

Tokenizer eval_tokenizer(const EvalOptions& o) { return load_text_tokenizer(tokenizer_folder(o)); }

std::vector<std::int32_t> eval_tokens(const EvalOptions& o, std::int32_t vocab_size) {
  if (!o.ids_file.empty()) return read_ids(o.ids_file, vocab_size);
  return eval_tokenizer(o).encode(read_utf8_text_file(o.text_file));
}

void print_task(const TaskResult& r) {
  std::printf("task %s  items %d  acc %.4f  acc_norm %.4f", r.name.c_str(), r.items, r.acc,
              r.acc_norm);
  if (r.agree) std::printf("  agree %.4f  agree_norm %.4f", *r.agree, *r.agree_norm);
  std::printf("\n");
}

// Every task file in turn; the result is {"<task name>": task_json(...), ...}.
nlohmann::json run_tasks(const EvalOptions& o, const Model& model, const Model* reference,
                         const LinearInputTransform* transform) {
  const Tokenizer tokenizer = eval_tokenizer(o);
  nlohmann::json results = nlohmann::json::object();
  for (const std::string& file : o.task_files) {
    const Task task = load_task(file, o.task_limit);
    if (results.contains(task.name)) {
      throw input_error(file, "a task name (file name without extension) not given before",
                        "\"" + task.name + "\" again");
    }
    ProgressReporter progress("task " + task.name);
    TaskEvalConfig config;
    config.input_transform = transform;
    const TaskResult r = evaluate_task(
        model, reference, tokenizer, task, config, [&](std::size_t done, std::size_t total) {
          progress.update(static_cast<long>(done), static_cast<long>(total));
        });
    print_task(r);
    results[task.name] = task_json(r);
  }
  return results;
}

// --llamacpp-base: the model on llama.cpp's tokens and chunks against its
// log-probabilities; with --text, whether ptq's tokenizer gives the same tokens.
nlohmann::json run_llamacpp_base(const EvalOptions& o, const Model& model,
                                 const EvalConfig& config) {
  LlamacppBase base = LlamacppBase::open(o.llamacpp_base);
  ProgressReporter progress("llamacpp-base");
  const LlamacppEvalResult r =
      evaluate_against_llamacpp(model, base,
                                {.max_chunks = config.max_windows,
                                 .batch_chunks = config.batch_windows,
                                 .resident_budget_bytes = config.resident_budget_bytes,
                                 .input_transform = config.input_transform},
                                [&](int done, int total) { progress.update(done, total); });
  std::printf("llamacpp-base chunks %d  n_ctx %d  positions %lld  bos %s\n", r.chunks, base.n_ctx(),
              static_cast<long long>(r.positions), r.bos_replaced ? "yes" : "no");
  std::printf("kl %.6f  top1 %.6f  ppl %.6f  base_ppl %.6f\n", r.kl, r.top1, r.ppl, r.base_ppl);
  nlohmann::json j = llamacpp_eval_json(r, base);
  if (!o.text_file.empty()) {
    const std::optional<std::int32_t> bos =
        r.bos_replaced ? std::optional(model.config().bos_token_id) : std::nullopt;
    const auto differs =
        first_token_difference(base, eval_tokens(o, model.config().vocab_size), bos);
    if (differs) {
      std::printf("tokens differ from ptq's tokenizer at %zu\n", *differs);
    } else {
      std::printf("tokens match ptq's tokenizer\n");
    }
    j["tokens_match"] = !differs;
    if (differs) j["first_token_difference"] = *differs;
  }
  return j;
}

// The logits of the evaluated tokens as one sequence, float32 [tokens, vocab]
// row-major, for comparisons with other loaders of the same folder; with the
// model's simulated int8 activations (W8A8) when it has them.
void dump_logits(const EvalOptions& o, const Model& model, const LinearInputTransform* transform) {
  const std::vector<std::int32_t> ids = eval_tokens(o, model.config().vocab_size);
  const MatrixRM l = logits(model, ids, static_cast<int>(ids.size()), transforming(transform));
  write_text_atomic(o.dump_logits, std::string_view(reinterpret_cast<const char*>(l.data()),
                                                    l.size() * sizeof(float)));
  std::printf("logits [%lld, %lld] -> %s\n", static_cast<long long>(l.rows()),
              static_cast<long long>(l.cols()), o.dump_logits.c_str());
}

// --dry-run: the memory a perplexity run would allocate, from config.json alone.
void print_estimate(const EvalOptions& o) {
  if (gguf_model_file(o.model))
    throw input_error("--dry-run --model " + o.model, "a checkpoint folder", "a GGUF model");
  const std::uint64_t bytes =
      estimate_eval_bytes(load_model_config(o.model), o.config, !o.reference.empty());
  std::printf("allocated    %.1f MiB (approx., without the mapped checkpoint's pages)\n",
              static_cast<double>(bytes) / 1048576.0);
}

void run_eval(const EvalOptions& o) {
  o.config.validate();
  if (o.dry_run) return print_estimate(o);
  // With --llamacpp-base, --text only checks the tokens.
  const bool perplexity = (!o.ids_file.empty() || !o.text_file.empty()) && o.llamacpp_base.empty();
  if (!perplexity && o.task_files.empty() && o.llamacpp_base.empty()) {
    throw input_error("ptq eval", "--text, --ids, --tasks or --llamacpp-base", "none of them");
  }
  if (!o.json_out.empty()) check_output_path(o.json_out, OutputKind::file, "--json");
  if (!o.dump_logits.empty()) check_output_path(o.dump_logits, OutputKind::file, "--dump-logits");
  const ThreadScope threads(o.threads);
  const DeviceUse device(o.device);
  const Model model = open_model(o.model);
  std::optional<Int8Activations> activations;
  EvalConfig config = o.config;
  const auto scheme = load_activation_quant(o.model, model.num_layers());
  if (scheme) {
    std::fprintf(stderr, "simulating int8 activations (%s) recorded in %s/config.json\n",
                 std::string(act_granularity_name(scheme->granularity)).c_str(), o.model.c_str());
    activations.emplace(std::move(*scheme));
  } else if (o.int8_activations) {
    activations.emplace(ActivationQuant{});
  }
  if (activations) config.input_transform = &*activations;
  std::optional<Model> reference;
  if (!o.reference.empty()) reference.emplace(open_model(o.reference));
  nlohmann::json j = nlohmann::json::object();
  if (perplexity) {
    const std::vector<std::int32_t> ids = eval_tokens(o, model.config().vocab_size);
    ProgressReporter progress("eval");
    const EvalResult r = evaluate(model, ids, config, reference ? &*reference : nullptr,
                                  [&](int done, int total) { progress.update(done, total); });
    print_result(r);
    j = eval_json(r, config);
    if (!o.dump_logits.empty()) dump_logits(o, model, config.input_transform);
  }
  if (!o.llamacpp_base.empty()) j["llamacpp_base"] = run_llamacpp_base(o, model, config);
  if (!o.task_files.empty())
    j["tasks"] = run_tasks(o, model, reference ? &*reference : nullptr, config.input_transform);
  if (!o.json_out.empty()) write_json_atomic(o.json_out, j);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Perplexity (and KL/top-1 vs a reference) and multiple-choice tasks of a model");
  cmd->add_option("--model", options->model,
                  "Checkpoint folder (config.json + safetensors), GGUF file or GGUF output folder")
      ->required();
  auto* text = cmd->add_option("--text", options->text_file,
                               "Text file, tokenized whole with the model's tokenizer");
  auto* ids = cmd->add_option("--ids", options->ids_file, "Token ids: raw little-endian int32");
  text->excludes(ids);
  ids->excludes(text);
  cmd->add_option("--tasks", options->task_files,
                  "Multiple-choice task files (JSONL {id, context, choices, gold}, or llama.cpp's "
                  "HellaSwag text layout)");
  cmd->add_option("--limit", options->task_limit, "Score the first N items of each task (0 = all)")
      ->capture_default_str();
  cmd->add_option("--ctx", options->config.ctx, "Window length in tokens")->capture_default_str();
  cmd->add_option("--max-windows", options->config.max_windows,
                  "Evaluate the first N windows (0 = all)")
      ->capture_default_str();
  cmd->add_option("--json", options->json_out, "Write the result as JSON to this file");
  cmd->add_option("--dump-logits", options->dump_logits,
                  "With --text/--ids: also write the logits of those tokens as one sequence "
                  "(float32 [tokens, vocab], row-major) to this file");
  cmd->add_option("--threads", options->threads, "Threads for BLAS and TBB (0 = all cores)")
      ->capture_default_str();
  add_device_flag(*cmd, options->device);
  cmd->add_flag(
      "--int8-activations", options->int8_activations,
      "Simulate int8 per-token activations at every Linear input (automatic for W8A8 outputs)");
  cmd->add_flag(
      "--dry-run", options->dry_run,
      "Print the memory a perplexity run would allocate and exit (reads config.json only)");
  cmd->add_option("--reference", options->reference,
                  "Reference checkpoint: also report KL(reference || model) and top-1 agreement, "
                  "and task agreement with its choices");
  cmd->add_option("--llamacpp-base", options->llamacpp_base,
                  "llama-perplexity --kl-divergence-base file: KL(llama.cpp || model) and top-1 on "
                  "its tokens and chunks (--max-windows: first N chunks; with --text: compare "
                  "ptq's tokens with llama.cpp's)")
      ->excludes(ids);
  cmd->callback([options] { run_eval(*options); });
}

}  // namespace ptq::cli
