#pragma once
// --set KEY=VALUE, the same flag on every command that reads a config.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace recmod::app {

inline void add_config_overrides(CLI::App* cmd, std::vector<std::string>& overrides) {
  cmd->add_option("--set", overrides,
                  "Override a config key, e.g. --set training.batch_size=4096 --set nodes.top.layer_sizes=[64,1] "
                  "(any YAML value; repeatable; the last one for a key wins)")
      ->allow_extra_args(false);  // one KEY=VALUE per --set: a config path after it stays positional
}

}  // namespace recmod::app
