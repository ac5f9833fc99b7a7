// ptq export --from RUN_DIR --format F --out DIR: an earlier run re-emitted in
// another format from its folder, with no forward pass (pipeline/quantize/export_run.hpp).
#include <cstdio>

#include "io/output_path.hpp"
#include "pipeline/cli/commands.hpp"
#include "pipeline/quantize/export_run.hpp"

namespace ptq::cli {
namespace {

struct ExportFlags {
  std::string run, format, gguf_type, out;
};

void run(const ExportFlags& f) {
  ExportJob job;
  job.out = check_output_path(f.out, OutputKind::folder, "--out");
  job.run = f.run;
  job.format = parse_output_format(f.format, "--format");
  job.gguf_type = f.gguf_type;
  export_run(job);
  std::fprintf(stderr, "wrote %s\n", f.out.c_str());
}

}  // namespace

void add_export(CLI::App& app) {
  auto flags = std::make_shared<ExportFlags>();
  auto* cmd = app.add_subcommand(
      "export", "Re-emit an earlier `ptq quantize` run in another format (no forward pass)");
  cmd->add_option("--from", flags->run, "Output folder of `ptq quantize`")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--format", flags->format,
                  "gptq, awq, compressed-tensors, bnb-nf4, gguf or dequantized")
      ->required();
  cmd->add_option("--gguf-type", flags->gguf_type,
                  "gguf: llama-quantize's type (Q4_0, Q8_0, ...); the run's Linears must fit it");
  cmd->add_option("--out", flags->out, "Output folder (new or empty)")->required();
  cmd->callback([flags] { run(*flags); });
}

}  // namespace ptq::cli
