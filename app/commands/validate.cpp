// recmod validate CONFIG: builds the model graph and prints it.
#include <iostream>

#include "commands/commands.h"
#include "recmod/config/graph.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::app {

void add_validate(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("validate", "Check a model config and print its graph: nodes, inputs, output shapes, parameter counts");
  auto config = std::make_shared<std::string>();
  cmd->add_option("config", *config, "Model config (YAML)")->required();
  actions["validate"] = [config] {
    // Tables are not allocated (a Kaggle-size model validates in a blink);
    // the check that they would fit in memory still runs.
    DeferTableAllocation defer(/*whole=*/true);
    auto model = config::build_model(*config);
    std::cout << *config << ": OK\n" << model->describe();
    return 0;
  };
}

}  // namespace recmod::app
