#pragma once
// The state of sharded tables (weights, optimizer state) moved between its
// shards and whole tensors: gathered onto rank 0 for a checkpoint, sliced
// out of a checkpoint of any world size. Shared by the sharded
// EmbeddingBagCollection and EmbeddingCollection.
#include <torch/types.h>

#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"

namespace recmod::dist {

/// A state tensor kept per table, to gather or slice: the weight, or an
/// optimizer state under "<prefix>.<t>.weight<suffix>".
struct TableTensorKind {
  std::string suffix;    // "" for the weight, ".momentum1", ".sum", ...
  bool per_row = false;  // shape (N) instead of (N, D)
  bool weight = false;   // dtype of the table's storage; else float32
};

/// One table as its state moves: its name, full shape, storage dtype and placement.
struct ShardedTableState {
  std::string name;
  int64_t num_embeddings = 0;
  int64_t embedding_dim = 0;
  torch::Dtype weight_dtype = torch::kFloat;
  TablePlan plan;
};

/// The plans of a module's tables, in the given order; InputError naming
/// "<module>.<table>" for a table the plan does not place.
std::vector<TablePlan> plans_of_tables(const ShardingPlan& plan, const std::string& module,
                                       const std::vector<std::string>& tables);

/// A shard that holds something (row_wise blocks can be empty).
inline bool holds_rows(const Shard& s) { return s.rows > 0 && s.cols > 0; }

/// Where each of `sizes`' blocks starts when laid end to end, and their total
/// last: {0, s0, s0+s1, ...}.
inline std::vector<int64_t> starts_of(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> out(sizes.size() + 1, 0);
  std::partial_sum(sizes.begin(), sizes.end(), out.begin() + 1);
  return out;
}

/// Collective: on rank 0, the full tensors of every table and kind, under
/// "<prefix>.<t>.weight<suffix>" (prefix "embedding_bags" or "embeddings"),
/// assembled from `local` (this rank's shards under the same keys); empty on
/// the other ranks. data_parallel tables come from rank 0's replica;
/// column_wise shards of a per-row state (one per block, as in TorchRec) are
/// averaged. A table rank 0 holds whole (data_parallel, table_wise there)
/// is rank 0's own tensor, detached, not a copy: read it, do not modify it.
StateDict gather_table_state(Communicator& comm, const std::string& prefix,
                             const std::vector<ShardedTableState>& tables, const StateDict& local,
                             const std::vector<TableTensorKind>& kinds);

/// Where rank 0 assembles a gathered tensor (or receives a strided shard):
/// a zero-filled CPU tensor of `sizes` and `dtype`, or an undefined tensor
/// for "on the heap, as without an allocator". A checkpoint of tables larger
/// than the memory passes one that puts the large ones in a file
/// (train::checkpoint_tensor_allocator).
using FullTensorAllocator = std::function<torch::Tensor(torch::IntArrayRef sizes, torch::Dtype dtype)>;

/// gather_table_state one tensor at a time: the same keys, shapes and order,
/// each entry's make a collective that returns the full tensor on rank 0
/// (undefined on the other ranks), assembled in what `allocate` returns.
/// Every rank calls the makes in order. `local` is kept (its tensors are the
/// rank's own shards, not copies); `comm` must outlive the entries.
DeferredStateDict deferred_table_state(Communicator& comm, const std::string& prefix,
                                       const std::vector<ShardedTableState>& tables, const StateDict& local,
                                       const std::vector<TableTensorKind>& kinds,
                                       const FullTensorAllocator& allocate = {});

/// `entries` with `prefix` before each key, appended to `out` (a module's
/// entries under its name in a parent's dict).
void append_prefixed(DeferredStateDict& out, DeferredStateDict entries, const std::string& prefix);

/// Makes every entry in order (on every rank: the makes are collectives)
/// and keeps what rank 0 made: a deferred gather taken whole. Empty on the
/// other ranks.
StateDict made_on_rank_zero(Communicator& comm, const DeferredStateDict& entries);

/// `rank`'s pieces of full tensors (keys as gather_table_state's), as views
/// of them (a column_wise piece is strided); tables the rank holds no shard
/// of are skipped; a missing key or a wrong shape is a CheckpointError
/// naming `origin`.
StateDict slice_table_state(int64_t rank, const std::string& prefix, const std::vector<ShardedTableState>& tables,
                            const StateDict& full, const std::vector<TableTensorKind>& kinds,
                            const std::string& origin);

}  // namespace recmod::dist
