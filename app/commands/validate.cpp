// recmod validate CONFIG: builds the model graph and prints it;
// recmod validate --list-types and recmod describe TYPE: the node types.
#include <iostream>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "recmod/common/errors.h"
#include "recmod/config/graph.h"
#include "recmod/config/registry.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::app {

namespace {

struct ValidateArgs {
  std::string config;
  bool expand = false;
  bool list_types = false;
  bool markdown = false;
  std::vector<std::string> overrides;  // --set KEY=VALUE
};

void print_node_types(bool markdown) {
  if (markdown) {
    std::cout << config::node_types_markdown();
    return;
  }
  size_t width = 0;
  for (const auto& t : config::node_types()) width = std::max(width, t.name.size());
  for (const auto& t : config::node_types())
    std::cout << t.name << std::string(width + 2 - t.name.size(), ' ')
              << (t.torchrec_class.empty() ? "(recmod)" : t.torchrec_class) << "\n";
  std::cout << "recmod describe TYPE prints a type's inputs, output and options.\n";
}

/// The config as recmod reads it: compact forms (for_each_feature tables)
/// written out in full. Comments are not kept.
void print_expanded(const std::string& path, const std::vector<std::string>& overrides) {
  const auto root = config::ConfigNode::load_file(path).with_overrides(overrides);
  config::parse_model_config(root);  // checks it, and expands in the tree
  std::cout << root.emit() << "\n";
}

}  // namespace

void add_validate(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("validate", "Check a model config and print its graph: nodes, inputs, output shapes, parameter counts");
  auto args = std::make_shared<ValidateArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)");
  add_config_overrides(cmd, args->overrides);
  cmd->add_flag("--expand", args->expand, "Print the config in its long form (for_each_feature tables expanded) instead");
  cmd->add_flag("--list-types", args->list_types, "Print every node type with its TorchRec class (no config needed)");
  cmd->add_flag("--markdown", args->markdown, "With --list-types: the table of docs/config.md");
  actions["validate"] = [args] {
    if (args->list_types) {
      print_node_types(args->markdown);
      return 0;
    }
    if (args->config.empty()) throw UsageError("validate needs a config file (or --list-types); see recmod validate --help");
    // Tables are not allocated (a Kaggle-size model validates in a blink);
    // the check that they would fit in memory still runs.
    DeferTableAllocation defer(/*whole=*/true);
    auto model = config::build_model(args->config, args->overrides);
    if (args->expand) {
      print_expanded(args->config, args->overrides);
      return 0;
    }
    std::cout << args->config << ": OK\n" << model->describe();
    return 0;
  };

  auto* describe = app.add_subcommand("describe", "Print a node type: its TorchRec class, inputs, output and options");
  auto type = std::make_shared<std::string>();
  describe->add_option("type", *type, "Node type, e.g. MLP (recmod validate --list-types lists them)")->required();
  actions["describe"] = [type] {
    const auto* t = config::find_node_type(*type);
    if (!t)
      throw UsageError(str_cat("unknown node type '", *type, "'; valid types are ", join_names(config::node_type_names())));
    std::cout << config::describe_node_type(*t);
    return 0;
  };
}

}  // namespace recmod::app
