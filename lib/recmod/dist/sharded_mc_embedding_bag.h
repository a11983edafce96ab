#pragma once
// ManagedCollisionEmbeddingBagCollection sharded over the ranks of a
// distributed run (TorchRec's ShardedManagedCollisionEmbeddingBagCollection),
// for row_wise (and table_wise) managed tables.
//
// Each rank holding rows [o, o + n) of a table holds the managed-collision
// module for exactly those slots, built with TorchRec's
// rebuild_with_output_id_range((o, o + n)) (zch_size n, output_global_offset
// o), and owns one contiguous block of the input id space: block i of
// ceil(input_hash_size / shards) ids for the i-th shard with rows (TorchRec's
// row-wise bucketization of the MC input dist).
//
//   rank p, its batch        shard 0: ids [0, B)       shard 1: ids [B, 2B)
//   ids --input hash-->      slots [0, n0)             slots [n0, n0 + n1)
//        --block of id-->    profile + remap  -> local slot -> its rows
//
// A step: every rank hashes its ids (the module's input_hash), sends each
// one to the shard whose block holds it (inside the sharded
// EmbeddingBagCollection's own input all-to-all: no extra collective), the
// holder profiles and remaps its ids (the global batch's ids of its block,
// in rank order) to its local slots and looks them up; pooled rows return
// as for any row_wise table. Eviction runs per shard, on the shard's own ids
// and slots; evicted rows are re-drawn there (reset_evicted_rows) with the
// table's init, from a generator seeded by (iteration, table, shard) rather
// than torch's: the ranks' generators stay in step and a resumed run draws
// the same rows.
//
// Not the same as one process in general: the unsharded module ranks all
// ids of a table against each other for its zch_size slots, a shard only the
// ids of its block for its n slots, and each shard has its own overflow
// slot (its last). They agree when every id keeps a slot of its own (no
// eviction pressure, eviction_interval 1), up to which slot an id gets.
//
// State keys and shapes are the unsharded module's (TorchRec's):
// `_embedding_bag_collection.embedding_bags.<t>.weight` and
// `_managed_collision_collection._managed_collision_modules.<t>.<buffer>`;
// gathered, the slot buffers hold global slots and are sorted by raw id, so
// the file is a valid unsharded state (one process evaluates it; ids a
// shard sent to its own overflow slot then go to the table's last slot).
// Slicing a file for a rank keeps the entries whose slots are its rows and
// refuses one whose ids lie outside its input block (a checkpoint of another
// world size that has placed ids: resharding would move rows between ids).
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/dist/table_state.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_embedding_modules.h"

namespace recmod::dist {

class ShardedManagedCollisionEmbeddingBagCollectionImpl : public torch::nn::Module {
 public:
  /// This rank's shards of `full`'s tables and its managed-collision modules
  /// for them, placed by `plan` (module name `module`). UsageError for a
  /// table planned otherwise than row_wise/table_wise, for mch_size
  /// (residual hashing) and for a module that is not an MCH module.
  ShardedManagedCollisionEmbeddingBagCollectionImpl(ManagedCollisionEmbeddingBagCollectionImpl& full,
                                                    const std::string& module, const ShardingPlan& plan,
                                                    std::shared_ptr<Communicator> comm);

  /// The unsharded module's pooled output on this rank's batch; evicted
  /// rows reset afterwards. Collective.
  KeyedTensor forward_sharded(const KeyedJaggedTensor& features);

  ShardedEmbeddingBagCollectionImpl& embedding_bag_collection() { return *ebc_; }
  const ShardedEmbeddingBagCollectionImpl& embedding_bag_collection() const { return *ebc_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }

  /// Collective, as ShardedEmbeddingBagCollectionImpl::gather, on this
  /// module's keys: with the weight kind, also the managed-collision state
  /// (global slots, sorted by raw id).
  StateDict gather(const StateDict& local, const std::vector<TableTensorKind>& kinds);
  /// gather one table tensor at a time (ShardedEmbeddingBagCollectionImpl::
  /// deferred_gather); the managed-collision state is gathered whole when
  /// this is called (its remapping is sorted as a whole; a few integers per
  /// slot) and handed out on rank 0.
  DeferredStateDict deferred_gather(const StateDict& local, const std::vector<TableTensorKind>& kinds,
                                    const FullTensorAllocator& allocate = {});
  /// This rank's part of full state, at any world size: a managed table's
  /// ids written with another layout are re-placed
  /// (ManagedCollisionShards::slice) and its rows move with them. The
  /// weights' slice (with the MC state) decides the moves; a later slice of
  /// optimizer state (a resume) moves its rows alike. CheckpointError
  /// naming `origin`.
  StateDict slice(const StateDict& full, const std::vector<TableTensorKind>& kinds, const std::string& origin);

 private:
  std::shared_ptr<Communicator> comm_;
  ManagedCollisionShards shards_;  // before the EBC: refuses what is not sharded
  std::shared_ptr<ShardedEmbeddingBagCollectionImpl> ebc_;
  ManagedCollisionCollection mcc_{nullptr};
  std::map<std::string, torch::Tensor> moved_rows_;  // by the last slice of weights: table -> source rows
  bool reset_evicted_rows_ = true;
};
TORCH_MODULE(ShardedManagedCollisionEmbeddingBagCollection);

}  // namespace recmod::dist
