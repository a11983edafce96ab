#pragma once
// ManagedCollisionEmbeddingCollection sharded over the ranks of a
// distributed run (TorchRec's ShardedManagedCollisionEmbeddingCollection),
// for row_wise (and table_wise) managed tables: the sequence counterpart of
// sharded_mc_embedding_bag.h, with the same layout, routing, eviction and
// state (shared in managed_shards.h). Each rank holding rows [o, o + n) of
// a table holds its MCH module rebuilt with
// rebuild_with_output_id_range((o, o + n)) and owns one block of the input
// ids; the ids travel to their block's holder inside the sharded
// EmbeddingCollection's own input all-to-all, the holder remaps and looks
// them up, and every id's row returns to the rank that read it.
//
// State keys and shapes are the unsharded module's (TorchRec v0.7.0's):
// `_managed_collision_collection.*`, then the tables twice, under
// `_embedding_module.embeddings.<t>.weight` and
// `_embedding_collection.embeddings.<t>.weight`.
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/dist/sharded_embedding.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/dist/table_state.h"
#include "recmod/mc/mc_embedding_modules.h"

namespace recmod::dist {

class ShardedManagedCollisionEmbeddingCollectionImpl : public torch::nn::Module {
 public:
  /// This rank's shards of `full`'s tables and its managed-collision modules
  /// for them, placed by `plan` (module name `module`). UsageError as the
  /// sharded MC-EBC's. The embedding collection's need_indices and this
  /// module's return_remapped_features are kept.
  ShardedManagedCollisionEmbeddingCollectionImpl(ManagedCollisionEmbeddingCollectionImpl& full,
                                                 const std::string& module, const ShardingPlan& plan,
                                                 std::shared_ptr<Communicator> comm);

  /// The unsharded module's output on this rank's batch; evicted rows reset
  /// afterwards. With need_indices each JaggedTensor's weights are the ids
  /// the collection looked up: the global slots (the unsharded table's rows)
  /// the ids were remapped to on their holders. Collective.
  JaggedTensorDict forward_sharded(const KeyedJaggedTensor& features);
  /// The unsharded forward(kjt): forward_sharded's output and, with
  /// return_remapped_features, the remapped KJT (this rank's batch, the
  /// input's keys, lengths, weights and dtype, each managed feature's ids
  /// replaced by its global slots; features of no table unchanged). The
  /// remapped KJT costs one more all-to-all of int64. Collective.
  std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);
  bool return_remapped_features() const { return return_remapped_features_; }

  ShardedEmbeddingCollectionImpl& embedding_collection() { return *ec_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }

  /// Collective, as ShardedEmbeddingCollectionImpl::gather, on this
  /// module's keys: with the weight kind, also the managed-collision state
  /// (global slots, sorted by raw id).
  StateDict gather(const StateDict& local, const std::vector<TableTensorKind>& kinds);
  /// gather one table tensor at a time (ShardedEmbeddingCollectionImpl::
  /// deferred_gather), the managed-collision state whole when this is
  /// called. The tables' second name (TorchRec v0.7.0's
  /// `_embedding_collection.`) gathers each table again rather than keeping
  /// the first: rank 0 holds one gathered table at a time.
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
  /// Each shard's eviction step after a lookup (evicted rows re-drawn when
  /// reset_evicted_rows), as the unsharded module runs it after its forward.
  void evict_after_lookup();

  std::shared_ptr<Communicator> comm_;
  ManagedCollisionShards shards_;  // before the EC: refuses what is not sharded
  std::shared_ptr<ShardedEmbeddingCollectionImpl> ec_;
  ManagedCollisionCollection mcc_{nullptr};
  std::map<std::string, torch::Tensor> moved_rows_;  // by the last slice of weights: table -> source rows
  bool reset_evicted_rows_ = true;
  bool return_remapped_features_ = false;
};
TORCH_MODULE(ShardedManagedCollisionEmbeddingCollection);

}  // namespace recmod::dist
