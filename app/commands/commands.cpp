#include "commands/commands.h"

namespace recmod::app {

namespace {
Actions& actions() {
  static Actions a;
  return a;
}
}  // namespace

void register_commands(CLI::App& app) {
  add_validate(app, actions());
  add_train(app, actions());
  add_eval(app, actions());
  add_compare(app, actions());
  add_profile(app, actions());
  add_evict(app, actions());
  add_data_commands(app, actions());
  add_inspect(app, actions());
  add_plan(app, actions());
  add_quantize(app, actions());
  add_convert_checkpoint(app, actions());
  add_report(app, actions());
}

int run_selected(CLI::App& app) {
  for (auto* sub : app.get_subcommands()) {
    auto it = actions().find(sub->get_name());
    if (it != actions().end()) return it->second();
  }
  return 2;
}

}  // namespace recmod::app
