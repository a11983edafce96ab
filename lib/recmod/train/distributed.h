#pragma once
// What a rank of a distributed run does besides a one-process run: shard the
// model's EmbeddingBagCollections (TorchRec's DistributedModelParallel
// module swap), take its rows of each global batch, and gather or slice the
// full state for checkpoints, so model.pt and trainer_state.pt are the same
// files, with the same keys, at every world size.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/data/batch.h"
#include "recmod/data/batcher.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/dist/table_state.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

/// The tables of the model's EmbeddingBagCollection nodes, as the planner sees them.
std::vector<dist::TableShape> shardable_tables(const config::ModelGraph& model);

/// The plan of the model's tables over `world_size` ranks: what the
/// config's `sharding:` section fixes, the planner's choice for the rest
/// (per-rank batch and embedding optimizer from its training section).
/// With `memory_per_rank`, a plan whose tables and optimizer state do not
/// fit it is refused (InputError with the numbers) before anything is drawn.
dist::ShardingPlan plan_model(const config::ModelGraph& model, const config::ModelConfig& config, int64_t world_size,
                              std::optional<double> memory_per_rank = std::nullopt);
/// "t_a=table_wise@0 t_b=row_wise@0,1 ..." (what rank 0 logs at the start).
std::string describe_plan(const dist::ShardingPlan& plan);

/// Swaps every EmbeddingBagCollection node for a ShardedEmbeddingBagCollection
/// and every EmbeddingCollection node with a table that is not data_parallel
/// for a ShardedEmbeddingCollection, each holding this rank's shards, copied
/// from the node's weights or, for a model built deferred
/// (open_model_deferred), drawn as the full init would have; then allocates
/// whatever deferred tables are left. The CPU generator's state is left as
/// it was. Managed-collision nodes are refused (UsageError).
void shard_model(config::ModelGraph& model, const dist::ShardingPlan& plan,
                 const std::shared_ptr<dist::Communicator>& comm);

/// Loads a full state_dict (a model.pt of any world size) into a sharded
/// model: each sharded collection takes its shards' slices, every other
/// node its tensors (strict per node); a key of no node is a CheckpointError.
void load_full_state(config::ModelGraph& model, const StateDict& full, const std::string& origin);
/// load_full_state for one node: the keys of `full` under "<node>." (all
/// of the node's, strict), the others ignored. A warm start's way into a
/// managed-collision node (its id -> slot state sliced for this rank).
void load_node_state(config::ModelGraph& model, const std::string& node, const StateDict& full,
                     const std::string& origin);
/// load_full_state from the checkpoint file at `path`, memory-mapped rather
/// than read onto the heap: each rank copies its shards out of the file's
/// pages in chunks and gives them back as it goes (the ranks of a host
/// share the page cache), then checks the file did not change under it.
/// What --resume at another world size and eval --nproc load.
void load_full_checkpoint(config::ModelGraph& model, const std::string& path);

using ShardedCollections = std::vector<std::pair<std::string, std::shared_ptr<dist::ShardedEmbeddingBagCollectionImpl>>>;
/// The sharded collections of a model, by node name.
ShardedCollections sharded_collections(const config::ModelGraph& model);

/// The rows of a global batch that `rank` takes: an even split in rank order
/// (data::rank_rows: rank r gets B / W rows, plus one when r < B % W), so the
/// ranks together see exactly the batch one process would. For a source that
/// hands every rank the whole global batch (not a data::Batcher in rank
/// mode, which reads only its rank's rows of the same split).
data::Batch rank_slice(const data::Batch& global, int64_t rank, int64_t world_size);
/// Collective: every rank's bad records of a data file (its part of
/// data::bad_records_cached's check), in rank order, over the run's
/// communicator (an all_gather of the sizes, then one broadcast per rank).
/// What data::ReadOptions::share_bad_records calls in a run with
/// --bad-records skip.
std::vector<data::BadRecords> share_bad_records(dist::Communicator& comm, const data::BadRecords& mine);
/// The rows each rank takes of a global batch of `total` rows (rank_slice's split).
std::vector<int64_t> rank_batch_sizes(int64_t total, int64_t world_size);

/// The full model state (PyTorch's key order, the unsharded shapes) as
/// rank 0 writes it, one tensor at a time: a sharded table's entry gathers
/// it from the ranks when made (a collective); the other entries (dense
/// layers, managed-collision modules, gathered whole when this is called)
/// exist on rank 0 only. Every rank makes its entries in order
/// (io::write_tensors on rank 0, io::make_and_drop elsewhere). Rank 0
/// assembles the sharded tables of an EmbeddingBagCollection or
/// EmbeddingCollection in what `allocate` returns (checkpoint_tensor_allocator).
DeferredStateDict deferred_model_state(const config::ModelGraph& model, dist::Communicator& comm,
                                       const dist::FullTensorAllocator& allocate = {});
/// The same for the full optimizer state (TrainingSetup's keys, unsharded shapes).
DeferredStateDict deferred_optimizer_state(const config::ModelGraph& model, const TrainingSetup& training,
                                           const config::TrainingSpec& spec, dist::Communicator& comm,
                                           const dist::FullTensorAllocator& allocate = {});

/// Where rank 0 assembles a gathered table for a checkpoint: on the heap
/// when it has at most `in_memory_bytes`, else in a file-backed tensor
/// (io::file_backed_zeros) in `dir`, the run directory, so that a table
/// larger than rank 0's memory can be checkpointed.
dist::FullTensorAllocator checkpoint_tensor_allocator(const std::string& dir, int64_t in_memory_bytes);
/// The default of `in_memory_bytes`: half the memory available now
/// (MemAvailable); no limit where that cannot be read.
int64_t default_checkpoint_memory();
/// This rank's part of a full optimizer state (a checkpoint of any world
/// size), without a copy: a sharded table's state is a view of its tensor in
/// `full` (its rows; a column_wise shard's columns are a strided view), every
/// other key is `full`'s tensor. A missing key or a wrong shape of a sharded
/// table's state is a CheckpointError naming `origin`.
StateDict local_optimizer_state(const config::ModelGraph& model, const StateDict& full,
                                const config::TrainingSpec& spec, const std::string& origin);
/// Loads this rank's part of a full optimizer state into `training`
/// (TrainingSetup::load_state_dict, its checks and errors). When `full` is
/// mapped (map_trainer_state) and this rank's part has exactly the keys,
/// shapes and dtypes of the optimizer's state, each mapped piece is first
/// copied into its tensor in chunks, giving the file's pages back as it
/// goes (copy_in_chunks): a rank holds its own state and a few MiB of the
/// file, never a whole table's state. Then checks the file did not change
/// under it (io::check_mapped_unchanged).
void load_local_optimizer_state(TrainingSetup& training, const config::ModelGraph& model, const StateDict& full,
                                const config::TrainingSpec& spec, const std::string& origin);

}  // namespace recmod::train
