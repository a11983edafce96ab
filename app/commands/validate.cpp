// recmod validate CONFIG: builds the model graph and prints it.
#include <yaml-cpp/yaml.h>

#include <iostream>

#include "commands/commands.h"
#include "recmod/config/graph.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::app {

namespace {

struct ValidateArgs {
  std::string config;
  bool expand = false;
};

/// A deep copy in which no node appears twice (expanded tables share the
/// template's value nodes, which the emitter would print as YAML aliases).
YAML::Node unshared(const YAML::Node& node) {
  if (node.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = unshared(kv.second);
    out.SetStyle(node.Style());
    return out;
  }
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& item : node) out.push_back(unshared(item));
    out.SetStyle(node.Style());
    return out;
  }
  if (node.IsScalar()) return YAML::Node(node.Scalar());
  return YAML::Node();
}

/// The config as recmod reads it: compact forms (for_each_feature tables)
/// written out in full. Comments are not kept.
void print_expanded(const std::string& path) {
  const auto root = config::ConfigNode::load_file(path);
  config::parse_model_config(root);  // checks it, and expands in the tree
  YAML::Emitter out;
  out << unshared(root.yaml());
  std::cout << out.c_str() << "\n";
}

}  // namespace

void add_validate(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("validate", "Check a model config and print its graph: nodes, inputs, output shapes, parameter counts");
  auto args = std::make_shared<ValidateArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  cmd->add_flag("--expand", args->expand, "Print the config in its long form (for_each_feature tables expanded) instead");
  actions["validate"] = [args] {
    // Tables are not allocated (a Kaggle-size model validates in a blink);
    // the check that they would fit in memory still runs.
    DeferTableAllocation defer(/*whole=*/true);
    auto model = config::build_model(args->config);
    if (args->expand) {
      print_expanded(args->config);
      return 0;
    }
    std::cout << args->config << ": OK\n" << model->describe();
    return 0;
  };
}

}  // namespace recmod::app
