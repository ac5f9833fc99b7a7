#pragma once
// Each subcommand lives in its own cmd_<name>.cpp with an add_<name>(app)
// function declared here and called from add_all (commands.cpp).
#include <CLI/CLI.hpp>

namespace ptq::cli {

void add_all(CLI::App& app);

void add_inspect(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_eval(CLI::App& app);
void add_quantize(CLI::App& app);
void add_calibrate(CLI::App& app);
void add_imatrix(CLI::App& app);
void add_export(CLI::App& app);
void add_report(CLI::App& app);
void add_batch(CLI::App& app);
void add_sweep(CLI::App& app);

}  // namespace ptq::cli
