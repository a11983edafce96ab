#pragma once
// Subcommands of the recmod binary. Each lives in its own file and only
// parses flags, calls the library and prints.
#include <CLI/CLI.hpp>

namespace recmod::app {

/// Adds every subcommand to `app`.
void register_commands(CLI::App& app);
/// Runs the subcommand that was parsed; returns the exit code.
int run_selected(CLI::App& app);

}  // namespace recmod::app
