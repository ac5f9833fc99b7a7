// ptq tokenize: a whole text file as one string -> raw little-endian int32 ids,
// no BOS, no special tokens added (the evaluation protocol's step 1).
#include <string>

#include "io/error.hpp"
#include "io/ids_file.hpp"
#include "io/output_path.hpp"
#include "io/text_file.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/recipe/text_tokenizer.hpp"

namespace ptq::cli {
namespace {

struct TokenizeOptions {
  std::string model;  // model folder or tokenizer.json
  std::string text;
  std::string out;
};

void run_tokenize(const TokenizeOptions& o) {
  check_output_path(o.out, OutputKind::file, "--out");
  const auto tokenizer = load_text_tokenizer(o.model);
  const auto ids = tokenizer.encode(read_utf8_text_file(o.text));
  write_ids(o.out, ids);
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  auto* cmd =
      app.add_subcommand("tokenize", "Tokenize a text file (one string, no BOS) into int32 .ids");
  cmd->add_option("--model", options->model, "Model folder or tokenizer.json")->required();
  cmd->add_option("--text", options->text, "UTF-8 text file")->required();
  cmd->add_option("--out", options->out, "Output .ids file (little-endian int32)")->required();
  cmd->callback([options] { run_tokenize(*options); });
}

}  // namespace ptq::cli
