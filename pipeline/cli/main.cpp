#include <cstdio>
#include <exception>

#include "io/error.hpp"
#include "pipeline/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"ptq: post-training quantization of LLM checkpoints"};
  app.require_subcommand(1);
  ptq::cli::add_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ptq::InputError& e) {
    std::fprintf(stderr, "ptq: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ptq: failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
