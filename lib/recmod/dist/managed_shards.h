#pragma once
// What the sharded managed-collision collections (bag and sequence:
// sharded_mc_embedding_bag.h, sharded_mc_embedding.h) share: how a managed
// table's ids are routed to its shards (ManagedRouting, used inside the
// sharded EBC's and EC's input dists) and the shards' managed-collision
// modules with their state (ManagedCollisionShards: built with TorchRec's
// rebuild_with_output_id_range, evicted rows re-drawn per shard, the MC
// state gathered into and sliced from the unsharded keys). See
// sharded_mc_embedding_bag.h for the layout and what it is the same as.
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/dist/table_state.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_configs.h"

namespace recmod::dist {

/// The state_dict prefix of a managed collision module's collection, under
/// which ManagedCollisionShards gathers and slices its buffers.
inline const std::string kMcc = "_managed_collision_collection.";

/// What a shard's lookups of a managed table met while counted (`recmod
/// evict`): the ids it remapped, those that found a slot of their own (not
/// the overflow slot, its last), and the distinct ids (after the input
/// hash; the shards' sets are disjoint, so they add up over the ranks).
struct ManagedLookupCounts {
  int64_t ids = 0;
  int64_t hits = 0;
  std::unordered_set<int64_t> distinct;
  /// One remap: `ids` (hashed, int64) went to local `slots`; `overflow` is the shard's last slot.
  void add(const torch::Tensor& ids, const torch::Tensor& slots, int64_t overflow);
};

/// How the ids of one managed table (row_wise or table_wise) reach its
/// shards, as TorchRec's sharded ManagedCollisionCollection routes them:
/// the sender applies the input hash, each id goes to the shard whose block
/// of [0, input_hash_size) holds it (blocks of ceil(input_hash_size /
/// shards), the i-th for the i-th shard with rows in the plan), and the
/// holder profiles and remaps it with `local` (its module for its rows;
/// null on a rank without rows of the table).
struct ManagedRouting {
  uint64_t input_size = 0;
  std::optional<HashFunc> hash;
  uint64_t block = 0;                  // ceil(input_size / shards with rows)
  std::vector<int64_t> block_of_rank;  // per rank: its block (index among the shards with rows), or -1
  std::shared_ptr<MCHManagedCollisionModuleImpl> local;
  std::shared_ptr<ManagedLookupCounts> counts;  // set while the holder's lookups are counted

  /// UsageError for a table planned otherwise than row_wise / table_wise.
  static ManagedRouting make(const TablePlan& plan, const MCHManagedCollisionModuleOptions& options, int64_t world,
                             int64_t rank, std::shared_ptr<MCHManagedCollisionModuleImpl> local);
  /// Ids [first, last) of block `shard`; last is 2**63 at most; {0, 0} for -1.
  std::pair<uint64_t, uint64_t> input_block(int64_t shard) const;
  /// The ids as the holders see them (input hash applied), int64.
  torch::Tensor hashed(const torch::Tensor& ids) const;
  /// Which of `hashed_ids` belong to rank `rank`'s block.
  torch::Tensor in_block_of(const torch::Tensor& hashed_ids, int64_t rank) const;
  /// InputError unless the raw `ids` of `feature` fall in the input space
  /// (any id does with an input hash); `what` names the module.
  void check_ids(const torch::Tensor& ids, const std::string& what, const std::string& feature,
                 const std::string& table) const;
};

/// Sizes every local module's id history from the number of ids of its
/// table in the global batch (what the unsharded module sizes it from):
/// `local_counts[t]` is this rank's count of managed table t (0 for
/// unmanaged). One all-reduce; collective.
void size_managed_histories(Communicator& comm, const std::vector<std::optional<ManagedRouting>>& routing,
                            const std::vector<int64_t>& local_counts);

/// The entries of `state` whose keys start with `prefix`, the prefix removed
/// (an MC collection's state split by submodule).
StateDict keys_under(const StateDict& state, const std::string& prefix);
/// Whether `kinds` asks for the tables' weights (the MC state goes with them).
bool has_weight_kind(const std::vector<TableTensorKind>& kinds);

/// `pieces` (a sharded collection's slice: keys "<prefix><table>.weight<suffix>",
/// this rank's rows of `full`'s tensors under the same keys) with the rows
/// of each table in `moved` (ManagedCollisionShards::slice's) taken from the
/// full tensor's rows it names instead.
void move_table_rows(StateDict& pieces, const StateDict& full, const std::map<std::string, torch::Tensor>& moved,
                     const std::string& prefix);

/// This rank's managed-collision modules of a sharded MC collection, one
/// per table it holds rows of, and their state.
class ManagedCollisionShards {
 public:
  /// From the unsharded collection `full` over `tables` (the embedding
  /// module's tables, in order), placed by `plan` under node `module`.
  /// UsageError for a module that is not an MCH module, for mch_size and for
  /// a table planned otherwise than row_wise / table_wise.
  ManagedCollisionShards(ManagedCollisionCollectionImpl& full, const std::vector<std::string>& tables,
                         const std::string& module, const ShardingPlan& plan, int64_t world, int64_t rank);

  const std::vector<TablePlan>& plans() const { return plans_; }
  /// The unsharded module of table `t`.
  const MCHManagedCollisionModuleImpl& full_module(size_t t) const { return *full_[t]; }
  /// Per table: its routing (this rank's module for its rows, if any).
  const std::vector<std::optional<ManagedRouting>>& routing() const { return routing_; }
  /// The local modules as a collection (registered by the owner).
  ManagedCollisionCollection collection() const { return mcc_; }

  /// Re-draws this rank's evicted rows with their table's init
  /// (`configs[t]`, the unsharded table's), from a generator seeded by
  /// (iteration, table, shard); `weight_of(table)` is the local table.
  void reset_evicted(const TableEvictions& evictions, const std::vector<const BaseEmbeddingConfig*>& configs,
                     const std::function<const torch::Tensor&(const std::string&)>& weight_of) const;
  /// One step's evictions: the local modules evict, and with `reset` the
  /// evicted rows are re-drawn (reset_evicted) over the unsharded tables
  /// `configs`.
  template <typename Config>
  void evict(bool reset, const std::vector<Config>& configs,
             const std::function<const torch::Tensor&(const std::string&)>& weight_of) {
    const TableEvictions evictions = mcc_->evict();
    if (!reset) return;
    std::vector<const BaseEmbeddingConfig*> tables;
    for (const auto& c : configs) tables.push_back(&c);
    reset_evicted(evictions, tables, weight_of);
  }
  /// Collective: on rank 0, the unsharded MC state (keys under
  /// _managed_collision_collection.) from this rank's `local` (same keys):
  /// global slots, sorted by raw id; empty elsewhere.
  StateDict gather(Communicator& comm, const StateDict& local) const;
  /// This rank's part of the unsharded MC state `full` (keys as gather's).
  /// A checkpoint written with this layout is taken as it is. One written
  /// at another world size or with another plan is re-placed: the ids of
  /// this rank's input block, in raw-id order, in its first slots with
  /// their metadata, the other entries empty as a new module's; then
  /// `moved_rows` gets, per such table, the full table's row each local row
  /// comes from (the rows, and their optimizer state, move with their ids:
  /// move_table_rows). CheckpointError naming `origin` for a malformed
  /// state, and for a block with more placed ids than its rows less one
  /// (the last entry is never matched).
  StateDict slice(const StateDict& full, const std::string& origin,
                  std::map<std::string, torch::Tensor>* moved_rows = nullptr) const;

 private:
  struct McKey {
    std::string key;    // under _managed_collision_collection.
    size_t table = 0;   // index in the unsharded collection
    std::string buffer; // _current_iter_tensor, _mch_sorted_raw_ids, ...
    torch::Dtype dtype = torch::kLong;
  };
  static bool per_slot(const McKey& k) { return k.buffer != "_current_iter_tensor"; }

  int64_t rank_ = 0;
  std::vector<TablePlan> plans_;  // per unsharded table
  std::vector<std::shared_ptr<MCHManagedCollisionModuleImpl>> full_;
  std::vector<std::optional<ManagedRouting>> routing_;
  ManagedCollisionCollection mcc_{nullptr};
  std::vector<McKey> mc_keys_;  // the unsharded collection's, in order
};

}  // namespace recmod::dist
