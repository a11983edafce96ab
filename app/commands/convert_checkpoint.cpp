// recmod convert-checkpoint IN OUT [--from|--to torchrec-dlrm] [--rename FROM=TO]...:
// renames a checkpoint's keys between naming schemes.
#include <iostream>

#include "commands/commands.h"
#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/checkpoint_keys.h"
#include "recmod/train/open_model.h"

namespace recmod::app {

namespace {

struct ConvertCheckpointArgs {
  std::string in, out;
  std::string from, to;  // a built-in map: TorchRec -> recmod (from), recmod -> TorchRec (to)
  std::vector<std::string> renames;
  std::string config;
};

// The recmod side of the conversion must be the config's model: its keys
// exactly, with the model's shapes (load_state_dict's checks).
void check_against_config(const StateDict& state, const std::string& config, const std::string& origin) {
  auto opened = train::open_model(config);
  train::check_checkpoint_keys(state, train::model_keys(opened.model), origin);
  recmod::load_state_dict(*opened.model, state, origin);
}

int run_convert_checkpoint(const ConvertCheckpointArgs& args) {
  if (!args.from.empty() && !args.to.empty()) throw UsageError("pass --from or --to, not both");
  if (args.from.empty() && args.to.empty() && args.renames.empty())
    throw UsageError("nothing to do: pass --from torchrec-dlrm, --to torchrec-dlrm or --rename FROM=TO");
  std::vector<train::KeyRename> user;
  for (const auto& spec : args.renames) user.push_back(train::parse_rename(spec));
  // --to: your renames first (e.g. your node names to DLRM's), then the map;
  // --from: the map first, then your renames (DLRM's names to yours).
  std::vector<std::vector<train::KeyRename>> passes;
  if (!args.to.empty()) passes = {user, train::builtin_key_map(args.to, /*to_torchrec=*/true)};
  else if (!args.from.empty()) passes = {train::builtin_key_map(args.from, /*to_torchrec=*/false), user};
  else passes = {user};

  StateDict state = io::load_tensors(args.in);
  const size_t total = state.size();
  if (!args.config.empty() && !args.to.empty()) check_against_config(state, args.config, args.in);
  int64_t renamed = 0;
  for (const auto& renames : passes) {
    if (renames.empty()) continue;
    train::RenameReport report;
    state = train::rename_keys(state, renames, &report);
    for (size_t i = 0; i < renames.size(); ++i) {
      std::cout << "  " << renames[i].from << "* -> " << renames[i].to << "*: " << report.renamed_per_rule[i] << " keys\n";
      renamed += report.renamed_per_rule[i];
    }
  }
  if (renamed == 0)
    throw InputError(str_cat(args.in, ": no key starts with any of the prefixes; its keys start with '",
                             state.empty() ? std::string() : state.front().first, "' ... (nothing written)"));
  if (!args.config.empty() && args.to.empty()) check_against_config(state, args.config, args.out);
  io::save_tensors(args.out, state);
  std::cout << args.out << ": " << total << " keys, " << renamed << " renamed";
  if (!args.config.empty()) std::cout << "; matches " << args.config;
  std::cout << "\n";
  return 0;
}

}  // namespace

void add_convert_checkpoint(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("convert-checkpoint",
                                 "Rename a checkpoint's keys: to/from TorchRec's DLRM, or by key prefix (--rename)");
  auto args = std::make_shared<ConvertCheckpointArgs>();
  cmd->add_option("input", args->in, "Checkpoint to read (torch.save of a state_dict)")->required();
  cmd->add_option("output", args->out, "Checkpoint to write")->required();
  cmd->add_option("--from", args->from, "Built-in map from another scheme to recmod's: torchrec-dlrm");
  cmd->add_option("--to", args->to, "Built-in map from recmod's keys to another scheme: torchrec-dlrm");
  cmd->add_option("--rename", args->renames, "FROM=TO: keys starting with FROM start with TO instead (repeatable; "
                                             "the first matching prefix wins)");
  cmd->add_option("--config", args->config,
                  "Check the recmod side (the output with --from/--rename, the input with --to) against this model config");
  actions["convert-checkpoint"] = [args] { return run_convert_checkpoint(*args); };
}

}  // namespace recmod::app
