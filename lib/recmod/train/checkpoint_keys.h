#pragma once
// Checkpoint keys across naming schemes: prefix renames (`recmod
// convert-checkpoint`), the built-in map between recmod's DLRM node names
// and TorchRec's torchrec.models.dlrm.DLRM, and a diagnosis of a checkpoint
// whose keys are not the model's.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"

namespace recmod::train {

/// Keys starting with `from` get `to` instead of that prefix.
struct KeyRename {
  std::string from;
  std::string to;
};

/// "FROM=TO" (either side may be empty, not both); UsageError otherwise.
KeyRename parse_rename(const std::string& spec);

/// recmod's DLRM (configs/dlrm_criteo*.yaml: nodes sparse_arch, dense_arch,
/// over_arch, logit) -> TorchRec's DLRM state_dict:
///   sparse_arch.embedding_bags.  -> sparse_arch.embedding_bag_collection.embedding_bags.
///   dense_arch._mlp.             -> dense_arch.model._mlp.
///   over_arch._mlp.              -> over_arch.model.0._mlp.
///   logit.                       -> over_arch.model.1.
std::vector<KeyRename> recmod_to_torchrec_dlrm();
/// The same renames the other way.
std::vector<KeyRename> reversed(const std::vector<KeyRename>& renames);
/// The built-in maps by name: "torchrec-dlrm" (to: recmod -> TorchRec); UsageError listing the names.
std::vector<KeyRename> builtin_key_map(const std::string& name, bool to_torchrec);
const std::vector<std::string>& builtin_key_map_names();

/// What rename_keys did: per rule (in order) the keys it renamed; and the keys no rule matched.
struct RenameReport {
  std::vector<int64_t> renamed_per_rule;
  int64_t unchanged = 0;
};
/// Each key is renamed by the first rule whose `from` prefixes it (rules are
/// tried in order); other keys are kept. Two keys ending with one name is a
/// CheckpointError naming both. Tensors are shared, not copied.
StateDict rename_keys(const StateDict& state, const std::vector<KeyRename>& renames, RenameReport* report = nullptr);

/// The model's state_dict keys, in order.
std::vector<std::string> model_keys(config::ModelGraph& model);

/// When a checkpoint has keys the model does not (a checkpoint of another
/// model or naming scheme), throws CheckpointError that says so in one
/// line and names the likely cause: a TorchRec DLRM state_dict (use
/// convert-checkpoint --from torchrec-dlrm), a prefix the model lacks or
/// has in addition (--rename), or else the model's top-level names. Returns
/// when every checkpoint key is the model's (missing keys are left to
/// load_state_dict's message).
void check_checkpoint_keys(const StateDict& checkpoint, const std::vector<std::string>& model_keys,
                           const std::string& origin);

/// What warm_start() did, per node of the model (in the model's order).
struct WarmStartNode {
  std::string node;
  bool selected = true;  // false: not among --init-only, kept its initialisation
  int64_t keys = 0;      // the node's state_dict keys
  int64_t loaded = 0;    // of those, copied from the checkpoint
  std::vector<std::string> missing;  // selected keys the checkpoint lacks (kept their initialisation)
};
struct WarmStartReport {
  std::vector<WarmStartNode> nodes;
  std::vector<std::string> unused;  // checkpoint keys the model (or the selection) does not take
  int64_t loaded() const;
  /// One line per node and one for the unused keys, for the console.
  std::string describe(const std::string& origin) const;
};

/// `train --init-from`: copies the checkpoint's values into the model's
/// keys of the selected nodes (`only`, node names; empty: every node) that
/// it has, with the same shape and dtype (else CheckpointError naming the
/// key); every other parameter keeps its initialisation. UsageError for a
/// name in `only` that is not a node (listing them); CheckpointError when
/// nothing would be loaded (with check_checkpoint_keys' diagnosis).
WarmStartReport warm_start(config::ModelGraph& model, const StateDict& checkpoint, const std::vector<std::string>& only,
                           const std::string& origin);
/// warm_start's checks and report, without the copies: for the model's
/// state `target` (meta tensors of deferred tables are checked by their
/// shape and dtype), `loaded` gets the keys warm_start would copy, in the
/// model's order (train::warm_start_sharded copies them shard by shard).
WarmStartReport match_warm_start(const StateDict& target, const StateDict& checkpoint,
                                 const std::vector<std::string>& only, const std::string& origin,
                                 std::vector<std::string>& loaded);

}  // namespace recmod::train
