#pragma once
// Subcommands of the recmod binary. Each lives in its own file and only
// parses flags, calls the library and prints.
#include <CLI/CLI.hpp>

#include <functional>
#include <map>
#include <string>

namespace recmod::app {

/// subcommand name -> what to run once the command line is parsed.
using Actions = std::map<std::string, std::function<int()>>;

/// Adds every subcommand to `app`.
void register_commands(CLI::App& app);
/// Runs the subcommand that was parsed; returns the exit code.
int run_selected(CLI::App& app);

// One per file in commands/.
void add_validate(CLI::App& app, Actions& actions);
void add_train(CLI::App& app, Actions& actions);
void add_eval(CLI::App& app, Actions& actions);
void add_compare(CLI::App& app, Actions& actions);
void add_profile(CLI::App& app, Actions& actions);
void add_evict(CLI::App& app, Actions& actions);
void add_data_commands(CLI::App& app, Actions& actions);
void add_inspect(CLI::App& app, Actions& actions);
void add_plan(CLI::App& app, Actions& actions);
void add_quantize(CLI::App& app, Actions& actions);
void add_convert_checkpoint(CLI::App& app, Actions& actions);
void add_report(CLI::App& app, Actions& actions);

}  // namespace recmod::app
