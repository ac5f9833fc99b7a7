#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) { add_eval(app); }

}  // namespace ptq::cli
