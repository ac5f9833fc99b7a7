#include "pipeline/cli/commands.hpp"

namespace ptq::cli {

void add_all(CLI::App& app) {
  add_inspect(app);
  add_tokenize(app);
  add_eval(app);
  add_quantize(app);
  add_calibrate(app);
  add_imatrix(app);
  add_export(app);
  add_report(app);
  add_batch(app);
  add_sweep(app);
}

}  // namespace ptq::cli
