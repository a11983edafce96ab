// recmod compare A B: two prediction files (one value per line, as
// `recmod eval --predictions` writes them) agree within tolerances, or the
// command fails naming the first difference.
#include <cmath>
#include <fstream>
#include <iostream>

#include "commands/commands.h"
#include "recmod/common/errors.h"

namespace recmod::app {

namespace {

std::vector<double> read_predictions(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(str_cat(path, ": cannot open the prediction file"));
  std::vector<double> values;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(line, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0) throw InputError(str_cat(path, ":", n, ": expected a number, found '", line, "'"));
    values.push_back(v);
  }
  return values;
}

struct CompareArgs {
  std::string a, b;
  double rtol = 1e-5;
  double atol = 1e-7;
};

int run_compare(const CompareArgs& args) {
  auto a = read_predictions(args.a);
  auto b = read_predictions(args.b);
  if (a.size() != b.size()) {
    std::cerr << "recmod: " << args.a << " has " << a.size() << " predictions, " << args.b << " has " << b.size() << "\n";
    return 1;
  }
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double diff = std::fabs(a[i] - b[i]);
    max_diff = std::max(max_diff, diff);
    if (!(diff <= args.atol + args.rtol * std::fabs(b[i]))) {
      std::cerr << "recmod: first difference at line " << i + 1 << ": " << a[i] << " vs " << b[i] << " (|diff| " << diff
                << " > atol " << args.atol << " + rtol " << args.rtol << " * |b|)\n";
      return 1;
    }
  }
  std::cout << a.size() << " predictions agree (max |diff| " << max_diff << ")\n";
  return 0;
}

}  // namespace

void add_compare(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("compare", "Compare two prediction files within tolerances (exit 1 at the first difference)");
  auto args = std::make_shared<CompareArgs>();
  cmd->add_option("a", args->a, "Prediction file")->required();
  cmd->add_option("b", args->b, "Reference prediction file")->required();
  cmd->add_option("--rtol", args->rtol, "Relative tolerance")->capture_default_str();
  cmd->add_option("--atol", args->atol, "Absolute tolerance")->capture_default_str();
  actions["compare"] = [args] { return run_compare(*args); };
}

}  // namespace recmod::app
