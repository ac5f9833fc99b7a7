#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) {
  add_eval(app);
  add_inspect(app);
  add_tokenize(app);
}

}  // namespace ptq::cli
