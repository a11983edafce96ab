#pragma once
// Runs the real recmod binary for end-to-end tests.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

#include "support/test_util.h"

namespace recmod::testing {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// `args` is appended to the binary's path as given (quote as needed).
inline RunResult run_recmod(const std::string& args) {
  std::string command = std::string(RECMOD_BIN) + " " + args + " 2>&1";
  RunResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

/// A fresh directory under the build tree, removed at the start of each use.
inline std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::path(RECMOD_BINARY_DIR) / "cli_test_tmp" / name;
  recmod::test::remove_tree(dir.string());
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

}  // namespace recmod::testing
