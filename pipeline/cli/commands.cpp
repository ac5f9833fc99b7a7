#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) { (void)app; }

}  // namespace ptq::cli
