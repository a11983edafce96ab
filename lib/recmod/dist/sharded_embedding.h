#pragma once
// EmbeddingCollection (sequence embeddings) sharded over the ranks of a
// distributed run (TorchRec's ShardedEmbeddingCollection), for table_wise,
// row_wise and column_wise tables; data_parallel tables stay replicas (see
// below).
//
// Each rank holds only its shards, as an EmbeddingCollection of local
// tables (this class is one, so its parameters read
// "embeddings.<table>.weight" with the shard's shape). A step:
//
//   input dist   every rank sends each holder the ids of its local batch
//                that the holder's shards need, per (table, holder) in the
//                table's feature order (row_wise: the ids in the holder's
//                rows, rebased; column_wise: every id to every column
//                block's holder); one all-to-all of counts, one of ids;
//   lookup       each holder looks the received ids up in its shards;
//   output dist  one all-to-all of rows (n x the shard's columns each,
//                flattened) returns every id's row to the rank that sent
//                it, in the order it was sent; that rank un-permutes
//                row_wise rows back to the input's id order, concatenates
//                column_wise blocks in column order, and splits the rows
//                per feature (the unsharded output);
//   backward     the same all-to-all in reverse (RowExchange), so each
//                holder gets the gradient of the rows it looked up, and so
//                the gradient of its shard (summed over every rank's ids).
//
// data_parallel tables inside a sharded collection are full replicas looked
// up locally; their gradients are ordinary replicated gradients (summed
// over the ranks by TrainingSetup: sharded_parameters() lists only the
// sharded tables' weights). A collection whose tables are all data_parallel
// is not swapped at all (shard_model).
#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/dist/table_state.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::dist {

class ShardedEmbeddingCollectionImpl : public EmbeddingCollectionImpl {
 public:
  /// Takes this rank's shards of `full`'s tables (copies), placed by `plan`
  /// (which must place every table of `full` under module name `module`).
  /// A column block narrower than the table is kept as a table of its own
  /// (an EmbeddingCollection's tables share one embedding_dim) under the
  /// same key, "embeddings.<table>.weight", shape (N, cols); so the
  /// optimizer keeps its state per block, as TorchRec does (row-wise
  /// Adagrad: one momentum per block, averaged when gathered).
  ShardedEmbeddingCollectionImpl(const EmbeddingCollectionImpl& full, const std::string& module,
                                 const ShardingPlan& plan, std::shared_ptr<Communicator> comm);

  /// The unsharded collection's forward on this rank's local batch: the
  /// same keys in the same order, values (n_f, D), the input's lengths, and
  /// with need_indices the ids looked up as weights (the input's dtype): a
  /// managed table's are the global slots its holders remapped the ids to,
  /// what the unsharded EmbeddingCollection sees after its
  /// ManagedCollisionCollection. With `looked_up`, also per full table the
  /// ids looked up (int64; managed: the global slots; its features' ids in
  /// order). Returning slots costs one more all-to-all of int64 (only with
  /// need_indices or `looked_up`, and a managed table). Collective.
  JaggedTensorDict forward_sharded(const KeyedJaggedTensor& local_features,
                                   std::vector<torch::Tensor>* looked_up = nullptr);

  const std::vector<EmbeddingConfig>& full_configs() const { return full_tables_; }
  /// Routes the ids of table `table` (index in the unsharded collection;
  /// row_wise or table_wise) by `routing` inside this collection's input
  /// dist, as ShardedEmbeddingBagCollectionImpl::manage_table does: hashed
  /// ids go to the shard whose input block holds them, the holder remaps
  /// them to its rows (the global batch's, in rank order) before the lookup;
  /// the first training step sizes the holders' histories (one all-reduce).
  /// With need_indices the output's ids are the holders' remapped slots,
  /// global (the row offset of the holder's shard added).
  void manage_table(int64_t table, const ManagedRouting& routing);
  /// The weights of the sharded (not data_parallel) local tables: the
  /// parameters whose gradients must not be summed over the ranks.
  std::vector<torch::Tensor> sharded_parameters() const;

  /// Collective: on rank 0, the full tensors (unsharded shapes) of every
  /// table and kind, under "embeddings.<t>.weight<suffix>", assembled from
  /// `local` (this rank's tensors under the same keys); empty elsewhere.
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
  friend struct RowExchange;
  void check_ids(const KeyedJaggedTensor& features) const;
  /// This rank's tensor of `table` (a narrow column block or a base table).
  const torch::Tensor& local_weight(const std::string& table) const;
  // The output dist (RowExchange's forward) and its reverse: send_rows[r]
  // elements of the flat `rows` go to rank r, recv_rows[r] come from r.
  torch::Tensor exchange(const torch::Tensor& rows, const std::vector<int64_t>& send_rows,
                         const std::vector<int64_t>& recv_rows);

  std::vector<std::optional<ManagedRouting>> managed_;  // per full table
  bool histories_sized_ = false;
  std::shared_ptr<Communicator> comm_;
  int64_t rank_ = 0;
  int64_t world_ = 1;
  std::string module_;
  std::vector<EmbeddingConfig> full_tables_;
  std::vector<std::vector<std::string>> full_names_;  // per table, per feature
  std::vector<TablePlan> table_plans_;                // per full table
  std::vector<ShardedTableState> table_states_;       // per full table, for gather/slice
  // Per full table: its non-empty shards in row order (empty for data_parallel).
  std::vector<std::vector<Shard>> held_;
  // Per rank: the full tables it holds a (non data_parallel) shard of, in
  // table order: the order of its slots in every exchange; and the columns
  // of each slot's shard.
  std::vector<std::vector<int64_t>> slots_;
  std::vector<std::vector<int64_t>> slot_cols_;
  // This rank's column blocks narrower than the table, by table name.
  std::vector<std::pair<std::string, EmbeddingTable>> narrow_;
  // A leaf that requires grad, fed to every exchange so that each rank's
  // backward runs the reverse exchange even when it holds no rows used.
  torch::Tensor anchor_;
};
TORCH_MODULE(ShardedEmbeddingCollection);

}  // namespace recmod::dist
