// recmod-conformance: replays golden cases (TorchRec's recorded outputs) on
// recmod's modules. Usage: recmod-conformance [--gate-supported] [--device cuda] PATH...
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/conformance/registry.h"
#include "recmod/conformance/runner.h"

int main(int argc, char** argv) {
  CLI::App app{"Replay golden cases (../shared/golden/FORMAT.md) on recmod's modules and compare."};
  std::vector<std::string> paths;
  bool gate_supported = false;
  bool list_supported = false;
  std::string device_name = "cpu";
  app.add_option("paths", paths, "case files or directories of *.json cases");
  app.add_flag("--gate-supported", gate_supported,
               "exit 1 only when a case of a module type recmod declares supported fails");
  app.add_flag("--list-supported", list_supported, "print the supported module types and exit");
  app.add_option("--device", device_name, "run the modules on cpu | cuda | cuda:N (compared on the CPU)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (list_supported) {
    for (const auto& m : recmod::conformance::supported_modules()) std::cout << m << "\n";
    return 0;
  }
  if (paths.empty()) {
    std::cerr << "recmod-conformance: give at least one case file or directory (e.g. ../shared/golden)\n";
    return 2;
  }
  try {
    const torch::Device device = recmod::app::parse_device(device_name);
    const auto files = recmod::conformance::collect_case_files(paths);
    if (files.empty()) {
      std::cerr << "recmod-conformance: no *.json case files found in the given paths\n";
      return 2;
    }
    const auto summary = recmod::conformance::run_conformance(files, std::cout, device);
    if (gate_supported) return summary.failed_supported > 0 ? 1 : 0;
    return summary.failed > 0 ? 1 : 0;
  } catch (const recmod::UsageError& e) {
    std::cerr << "recmod-conformance: " << e.what() << "\n";
    return 2;
  }
}
