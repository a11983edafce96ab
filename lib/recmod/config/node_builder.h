#pragma once
// The contract between the graph and the per-type builders of the registry:
// a builder reads a node's YAML, checks it against the shapes of its inputs
// and returns the module, how to run it and the shape it produces.
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "recmod/config/model_config.h"
#include "recmod/config/value.h"

namespace recmod::config {

/// One input of a node as the builder sees it.
struct Port {
  std::string name;  // a node name, features.dense or features.sparse
  ValueShape shape;
};

struct BuiltNode {
  /// Registered under the node's name (so state_dict keys are
  /// "<node>.<TorchRec's key>"); null for parameter-free nodes.
  std::shared_ptr<torch::nn::Module> module;
  std::function<Value(const std::vector<Value>&)> forward;
  ValueShape shape;
  /// Parameters go to the embedding optimizer (tables), not the dense one.
  bool embedding = false;
  /// In an embedding node, the submodules whose parameters still go to the
  /// dense optimizer (a feature-processed collection's position weights).
  std::vector<std::string> dense_submodules;
  /// One line for `recmod validate` (tables, layer sizes, ...).
  std::string summary;
};

using NodeBuilder = std::function<BuiltNode(const NodeSpec& spec, const std::vector<Port>& inputs)>;

/// Errors at the node's "inputs" (or "input") key.
[[noreturn]] void fail_at_inputs(const NodeSpec& spec, const std::string& what);
/// Errors unless there are exactly `n` inputs.
void expect_num_inputs(const NodeSpec& spec, const std::vector<Port>& inputs, size_t n);
/// Errors unless input `i` is dense or pooled; returns its width.
int64_t expect_dense_input(const NodeSpec& spec, const Port& input, const std::string& type);
/// Errors unless the input is raw sparse features containing `needed` keys.
void expect_sparse_input(const NodeSpec& spec, const Port& input, const std::vector<std::string>& needed,
                         const std::string& type);

}  // namespace recmod::config
