// recmod report RUNDIR [RUNDIR...] [--out FILE]: training runs as one HTML page.
#include <iostream>

#include "commands/commands.h"
#include "recmod/train/report.h"

namespace recmod::app {

namespace {

struct ReportArgs {
  std::vector<std::string> runs;
  std::string out;
};

int run_report(const ReportArgs& args) {
  const std::string out = !args.out.empty() ? args.out : args.runs.size() == 1 ? args.runs[0] + "/report.html" : "report.html";
  train::write_report(args.runs, out);
  std::cout << "report: " << out << " (" << args.runs.size() << (args.runs.size() == 1 ? " run" : " runs") << ")\n";
  return 0;
}

}  // namespace

void add_report(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand(
      "report", "Training curves of one or more run directories as one self-contained HTML page (inline SVG, no network)");
  auto args = std::make_shared<ReportArgs>();
  cmd->add_option("runs", args->runs, "Run directories of recmod train (each with its metrics.jsonl)")->required();
  cmd->add_option("--out", args->out, "The page to write (default: RUNDIR/report.html for one run, report.html for several)");
  actions["report"] = [args] { return run_report(*args); };
}

}  // namespace recmod::app
