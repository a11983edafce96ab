// recmod: TorchRec's modules from the shell. main() only wires CLI11 to the
// subcommands in commands/ and turns errors into messages and exit codes:
// 0 success, 1 runtime failure, 2 usage or config error.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "commands/commands.h"
#include "commands/distributed_run.h"
#include "recmod/common/errors.h"

namespace {

int parse_error(const CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
  std::cerr << "recmod: " << e.what() << "; run 'recmod --help' (or 'recmod <command> --help') for usage\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // A file-size limit (ulimit -f, RLIMIT_FSIZE) reached by a write would kill
  // the process with SIGXFSZ; ignored, the write fails with EFBIG and the
  // command stops with its error like on a full disk (old files intact).
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"recmod: TorchRec modules in C++, driven by YAML model configs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "recmod 0.1.0");
  recmod::app::register_commands(app);
  recmod::app::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return parse_error(app, e);
  }
  try {
    return recmod::app::run_selected(app);
  } catch (const recmod::UsageError& e) {
    std::cerr << "recmod: " << e.what() << "\n";
    return 2;
  } catch (const recmod::ConfigError& e) {
    std::cerr << "recmod: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "recmod: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "recmod: " << e.what() << "\n";
    return 1;
  }
}
