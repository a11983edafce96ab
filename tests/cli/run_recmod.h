#pragma once
// Runs the real recmod binary for end-to-end tests.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

#include "support/synthetic_data.h"
#include "support/test_util.h"

namespace recmod::testing {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs a shell command line and collects its stdout (append 2>&1 for stderr).
inline RunResult run_command(const std::string& command) {
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

/// `args` is appended to the binary's path as given (quote as needed).
inline RunResult run_recmod(const std::string& args) {
  return run_command(std::string(RECMOD_BIN) + " " + args + " 2>&1");
}

/// A fresh directory under the build tree, removed at the start of each use.
inline std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::path(RECMOD_BINARY_DIR) / "cli_test_tmp" / name;
  recmod::test::remove_tree(dir.string());
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// A tiny DLRM-like config over generated data (recmod generate --dense 2
/// --sparse 3 --cardinality 50): three 50-row tables, an MLP, a dot
/// interaction and a logit.
inline std::string tiny_model_yaml(const std::string& dense_optimizer = "{type: adam, lr: 0.01}", int epochs = 2) {
  return R"(features:
  dense: {count: 2}
  sparse: [C1, C2, C3]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 50, embedding_dim: 4, feature_names: [C1]}
      - {name: t2, num_embeddings: 50, embedding_dim: 4, feature_names: [C2]}
      - {name: t3, num_embeddings: 50, embedding_dim: 4, feature_names: [C3]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
training:
  dense_optimizer: )" + dense_optimizer + R"(
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 64
  epochs: )" + std::to_string(epochs) + R"(
  seed: 3
  log_interval: 10
)";
}

inline std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

}  // namespace recmod::testing
