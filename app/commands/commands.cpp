#include "commands/commands.h"

#include <functional>
#include <map>

namespace recmod::app {

namespace {
// subcommand name -> action, filled by register_commands.
std::map<std::string, std::function<int()>>& actions() {
  static std::map<std::string, std::function<int()>> a;
  return a;
}
}  // namespace

void register_commands(CLI::App& app) {
  (void)app;
  (void)actions();
}

int run_selected(CLI::App& app) {
  for (auto* sub : app.get_subcommands()) {
    auto it = actions().find(sub->get_name());
    if (it != actions().end()) return it->second();
  }
  return 2;
}

}  // namespace recmod::app
