#pragma once
// EmbeddingBagCollection sharded over the ranks of a distributed run
// (TorchRec's ShardedEmbeddingBagCollection), for table_wise, row_wise,
// column_wise and data_parallel tables in any mix.
//
// Each rank holds only its shards, as an EmbeddingBagCollection of local
// tables (this class is one, so its parameters read
// "embedding_bags.<table>.weight" with the shard's shape, and the fused
// training path applies to the shards unchanged). A step:
//
//   input dist   every rank sends each holder the bags of its local batch
//                that the holder's shards need (row_wise: only the ids in
//                the holder's rows, rebased), one all-to-all of lengths,
//                one of ids (one of weights when weighted);
//   lookup       each holder pools its shards over the global batch
//                (sum over ranks of the per-rank batches, rank-major);
//   output dist  one all-to-all returns to each rank the pooled rows of its
//                samples; the rank then concatenates column blocks
//                (column_wise), sums row blocks (row_wise; MEAN divides by
//                the bag length after the sum, so it is exact), and keeps
//                its own copy of data_parallel tables;
//   backward     the same all-to-all in reverse; data_parallel tables'
//                gradients go to every rank, so all replicas apply the same
//                global update. No dense gradient of a table is ever built.
//
// With the loss of each rank scaled to its share of the global batch, N
// ranks with per-rank batch b train exactly what one process with batch N*b
// does (up to float summation order).
#include <torch/types.h>

#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/dist/table_state.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::dist {

/// One (table, feature) pair held by one rank: what that rank looks up.
struct SlotPlacement {
  int64_t table = 0;    // index in the unsharded collection's tables
  int64_t feature = 0;  // index in the table's feature_names
  ShardingType type = ShardingType::table_wise;
  Shard shard;
  int64_t column = 0;   // first column of this slot in the holder's local output
};

class ShardedEmbeddingBagCollectionImpl : public EmbeddingBagCollectionImpl {
 public:
  /// Takes this rank's shards of `full`'s tables (copies), placed by `plan`
  /// (which must place every table of `full` under module name `module`).
  ShardedEmbeddingBagCollectionImpl(const EmbeddingBagCollectionImpl& full, const std::string& module,
                                    const ShardingPlan& plan, std::shared_ptr<Communicator> comm);

  /// The unsharded collection's forward, on this rank's local batch:
  /// (B_local, sum D) in the unsharded key order. Collective.
  KeyedTensor forward_sharded(const KeyedJaggedTensor& features);

  /// Routes the ids of table `table` (index in the unsharded collection;
  /// row_wise or table_wise) as TorchRec's sharded ManagedCollisionCollection
  /// does, inside this collection's own input dist: the sender applies the
  /// input hash of `options` (the unsharded module's), each id goes to the
  /// shard whose block of [0, input_hash_size) holds it (blocks of
  /// ceil(input_hash_size / shards), in row order), and the holder remaps it
  /// with `local` (its module for its rows: profile in training, then remap
  /// to a local slot) before the lookup. `local` is null on a rank without
  /// rows of the table. No collective beyond the EBC's own, but one
  /// all-reduce at the first training step sizes every shard's history from
  /// the global batch (MCHManagedCollisionModule::size_history).
  void manage_table(int64_t table, const MCHManagedCollisionModuleOptions& options,
                    std::shared_ptr<MCHManagedCollisionModuleImpl> local);
  /// From now on counts what this rank's shard of managed table `table`
  /// remaps (ManagedLookupCounts); nullptr when it holds no rows of it.
  std::shared_ptr<ManagedLookupCounts> count_managed_lookups(int64_t table);
  /// Ids [first, last) of the input space that block `shard` (index among
  /// the table's shards with rows) of managed table `table` owns; last is
  /// 2**63 at most; {0, 0} for shard -1.
  std::pair<uint64_t, uint64_t> input_block(int64_t table, int64_t shard) const;

  /// The unsharded module's key order and widths.
  const std::vector<std::string>& full_embedding_names() const { return full_names_; }
  const std::vector<EmbeddingBagConfig>& full_configs() const { return full_tables_; }

  /// Collective: on rank 0, the full tensors (unsharded shapes) of every
  /// table and kind, under "embedding_bags.<t>.weight<suffix>", assembled
  /// from `local` (this rank's tensors under the same keys); empty on the
  /// other ranks. column_wise shards of a per-row state (rowwise adagrad's
  /// momentum, one per shard as in TorchRec) are averaged.
  StateDict gather(const StateDict& local, const std::vector<TableTensorKind>& kinds);
  /// gather one tensor at a time (dist::deferred_table_state): what a
  /// checkpoint writes, so rank 0 holds one gathered table at most.
  DeferredStateDict deferred_gather(const StateDict& local, const std::vector<TableTensorKind>& kinds,
                                    const FullTensorAllocator& allocate = {});
  /// This rank's pieces of full tensors (keys as gather's), for loading a
  /// checkpoint written at any world size. Keys of tables this rank does
  /// not hold are skipped; a missing key throws CheckpointError.
  StateDict slice(const StateDict& full, const std::vector<TableTensorKind>& kinds, const std::string& origin) const;

 private:
  friend struct PooledExchange;
  void check_ids(const KeyedJaggedTensor& features) const;
  KeyedJaggedTensor distribute_input(const KeyedJaggedTensor& features, const std::vector<int64_t>& batch_sizes);
  // The output dist and its reverse (PooledExchange's two halves).
  torch::Tensor exchange_forward(const torch::Tensor& pooled, const std::vector<int64_t>& batch_sizes);
  torch::Tensor exchange_backward(const torch::Tensor& grad, const std::vector<int64_t>& batch_sizes);
  int64_t dp_width() const { return static_cast<int64_t>(dp_columns_.size()); }
  /// Ids of slot (table, feature) of my batch as the holders see them: the
  /// managed tables' input hash applied.
  torch::Tensor routed_ids(const SlotPlacement& slot, const torch::Tensor& ids) const;
  void size_managed_histories(const KeyedJaggedTensor& features);

  std::vector<std::optional<ManagedRouting>> managed_;  // per full table
  bool histories_sized_ = false;
  // The device of the last input (CPU or a rank's GPU), for tensors made here.
  torch::Device device_{torch::kCPU};

  std::shared_ptr<Communicator> comm_;
  int64_t rank_ = 0;
  int64_t world_ = 1;
  bool full_weighted_ = false;
  std::vector<EmbeddingBagConfig> full_tables_;
  std::vector<std::string> full_names_;
  std::vector<int64_t> full_widths_;
  std::vector<TablePlan> table_plans_;               // per full table
  std::vector<ShardedTableState> table_states_;      // per full table, for gather/slice
  std::vector<std::vector<SlotPlacement>> slots_;    // per rank, in its local output order
  std::vector<int64_t> local_width_;                 // per rank
  std::vector<std::vector<int64_t>> sent_columns_;   // [r]: my local columns sent to rank r
  std::vector<int64_t> dp_columns_;                  // my local columns of data_parallel slots
  std::vector<std::vector<int64_t>> received_width_; // [o][r]: columns o sends to r
  struct Piece {
    int64_t from = 0;    // rank whose block holds it
    int64_t offset = 0;  // column within that block
    int64_t cols = 0;
  };
  struct OutputKey {
    std::vector<Piece> pieces;
    bool sum = false;   // row_wise: add the pieces, else concatenate
    bool mean = false;  // row_wise MEAN: divide by the bag length
    std::string feature;
  };
  std::vector<OutputKey> assembly_;
  // A leaf that requires grad, fed to every exchange so that each rank's
  // backward runs the reverse exchange even when it holds no table.
  torch::Tensor anchor_;
};
TORCH_MODULE(ShardedEmbeddingBagCollection);

}  // namespace recmod::dist
