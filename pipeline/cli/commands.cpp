#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) { add_tokenize(app); }

}  // namespace ptq::cli
