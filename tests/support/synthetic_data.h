#pragma once
// Synthetic data files for tests, written in the test's own process.
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "recmod/data/generate.h"

namespace recmod::testing {

/// Writes to `path` the file `recmod generate <args> --out <path>` writes
/// (args: --rows, --dense, --sparse, --cardinality, --max-ids, --seed,
/// --skip, --format; the command's defaults), in this process: the same
/// library call without a recmod process, which takes about 2.5 s to start
/// under the sanitizers. TrainCliTest.GenerateInProcessWritesWhatTheCommandWrites
/// checks that the two agree. Returns `path`.
inline std::string write_synthetic(const std::string& path, const std::string& args) {
  std::map<std::string, std::string> flags{{"--rows", "10000"}, {"--dense", "13"},       {"--sparse", "26"},
                                           {"--cardinality", "1000"}, {"--max-ids", "1"}, {"--seed", "0"},
                                           {"--skip", "0"}, {"--format", "binary"}};
  std::istringstream words(args);
  for (std::string flag, value; words >> flag;) {
    if (!flags.count(flag) || !(words >> value)) throw std::invalid_argument("write_synthetic: bad arguments: " + args);
    flags[flag] = value;
  }
  data::GenerateOptions options;
  options.num_rows = std::stoll(flags["--rows"]);
  options.num_dense = std::stoll(flags["--dense"]);
  options.sparse = data::numbered_features(std::stoll(flags["--sparse"]), std::stoll(flags["--cardinality"]),
                                           std::stoll(flags["--max-ids"]));
  options.seed = std::stoull(flags["--seed"]);
  const auto format = flags["--format"] == "jsonl" ? data::GenerateFormat::kJsonl : data::GenerateFormat::kBinary;
  data::generate_to_file(options, path, format, std::stoll(flags["--skip"]));
  return path;
}

}  // namespace recmod::testing
