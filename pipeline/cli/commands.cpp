#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) {
  add_quantize(app);
}

}  // namespace ptq::cli
