#pragma once
// The one explicit table from a config's `type:` to its builder, and the one
// description of each type: its TorchRec class, what it takes and gives, and
// its options. The graph checks a node's keys against it, `recmod validate
// --list-types` / `recmod describe TYPE` print it, and docs/config.md's table
// is generated from it (a test keeps them equal). No static
// self-registration: adding a type means adding a row to registry.cpp.
#include <string>
#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

struct NodeOption {
  std::string key;
  /// Values and default, e.g. "relu | sigmoid | swish_layernorm (default relu)".
  std::string description;
};

struct NodeType {
  std::string name;
  /// The TorchRec class it builds ("" for recmod's own glue nodes).
  std::string torchrec_class;
  std::string inputs;  // what the node takes
  std::string output;  // what it gives, with its state_dict keys
  std::vector<NodeOption> options;
  NodeBuilder build;
};

/// Every node type, in the order docs/config.md lists them.
const std::vector<NodeType>& node_types();
/// nullptr when `name` is not a node type.
const NodeType* find_node_type(const std::string& name);
std::vector<std::string> node_type_names();
/// The keys a node of this type may have: type, input, inputs and its options.
std::vector<std::string> allowed_keys(const NodeType& type);

/// docs/config.md's table of node types (markdown).
std::string node_types_markdown();
/// One type in full, for `recmod describe TYPE`.
std::string describe_node_type(const NodeType& type);

}  // namespace recmod::config
