#pragma once
// The one explicit table from a config's `type:` to its builder. No static
// self-registration: adding a type means adding a line to registry.cpp.
#include <string>
#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

struct NodeType {
  std::string name;
  NodeBuilder build;
};

/// Every node type, in the order docs/config.md lists them.
const std::vector<NodeType>& node_types();
/// nullptr when `name` is not a node type.
const NodeType* find_node_type(const std::string& name);
std::vector<std::string> node_type_names();

}  // namespace recmod::config
