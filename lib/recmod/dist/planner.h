#pragma once
// The sharding planner (TorchRec's EmbeddingShardingPlanner role, much
// simplified): places every embedding table on the ranks of a run, honouring
// what a config's `sharding:` section fixed, and estimates what each rank
// holds and does per step. It is a calculation on table shapes only: nothing
// is allocated, so it answers for 512 ranks and 500 GB of tables at once.
//
// Automatic placement (tables without a request), greedy: bytes under a cap, then lookups:
//   - bytes of a table = parameters (N x D x bytes_per_element) + optimizer
//     state (state_per_row(D) x N float32s: sgd 0, adagrad D, rowwise_adagrad 1);
//   - mean = (bytes of all tables, data_parallel ones once per rank) / world_size,
//     cap = min(mean x (1 + balance_slack), memory_per_rank);
//   - fixed requests (ranks given, row_wise, data_parallel) load the ranks
//     first; then, largest first, a table requested column_wise without
//     ranks goes to the min(world_size, D) ranks with the fewest bytes, and
//     every other table goes table_wise to the rank with the fewest estimated
//     lookups (then bytes, then lowest rank) among those it leaves within
//     cap: bytes are balanced by the cap, lookups by the choice. When no rank
//     can take it within cap, the table becomes row_wise (bytes / world_size
//     on every rank) and the placement starts over with that row_wise load
//     on every rank (a table requested table_wise without a rank then goes to
//     the rank with the fewest bytes). So a table larger than a fair per-rank
//     share or than memory_per_rank is row_wise, and every rank of an auto
//     plan ends at most at max(cap, its fixed + row_wise bytes): the balance
//     is within 1 + balance_slack unless requests or row_wise rows (the
//     ceil-split gives the first ranks up to one row more) decide otherwise.
//   - data_parallel and column_wise are used only when requested.
//   - world_size 1: every unrequested table is table_wise on rank 0.
// If the plan does not fit memory_per_rank, the planner retries with every
// unrequested table row_wise; if that does not fit either, it throws
// InputError naming the rank, the bytes it needs and the bytes available.
//
// Shards: row_wise gives rank r rows [r*c, min((r+1)*c, N)) with
// c = ceil(N / world_size) (TorchRec's split; the last ranks may get fewer or
// 0 rows); column_wise splits D into near-equal contiguous blocks (the first
// D % k blocks one column wider), block i on the i-th listed rank.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "recmod/dist/sharding_plan.h"
#include "recmod/optim/optimizer_options.h"

namespace recmod::dist {

struct PlannerOptions {
  int64_t world_size = 1;
  std::optional<double> memory_per_rank;  // bytes; nullopt: no limit
  std::string device = "cpu";             // reported only (cpu: host memory, cuda: device memory)
  int64_t batch_size_per_rank = 256;
  double pooling_factor = 1.0;                                 // ids per bag, for the estimates
  optim::OptimizerOptions optimizer{"rowwise_adagrad", 0.05};  // embedding optimizer: its state bytes per row
  double balance_slack = 0.1;  // how far above the mean bytes a table_wise placement may take a rank
};

/// Places every table of `tables` (InputError for a request that names no
/// table, a bare table name that several modules have, ranks outside
/// [0, world_size), a table_wise request with other than one rank,
/// column_wise ranks that repeat or outnumber embedding_dim, ranks given to
/// row_wise / data_parallel or without a type, a plan over memory_per_rank).
/// Tables appear in the plan in the order of `tables`.
ShardingPlan plan_sharding(const std::vector<TableShape>& tables, const ShardingRequest& request,
                           const PlannerOptions& options);

/// The row blocks of a row_wise table (one per rank, ceil-split) and the
/// column blocks of a column_wise one (one per listed rank).
std::vector<Shard> row_wise_shards(int64_t num_embeddings, int64_t embedding_dim, int64_t world_size);
std::vector<Shard> column_wise_shards(int64_t num_embeddings, int64_t embedding_dim, const std::vector<int64_t>& ranks);

/// Bytes of optimizer state for `rows` rows of `cols` columns (float32 state).
int64_t optimizer_state_bytes(const optim::OptimizerOptions& optimizer, int64_t rows, int64_t cols);

/// Estimates per rank and step (stated as estimates; nothing is measured).
/// With G = world_size x batch_size_per_rank, b = batch_size_per_rank,
/// p = pooling_factor, f = features of a table, D its dim, and for a shard
/// phi = rows / N (row_wise; 1 otherwise) and c = its columns:
///   lookups: a shard's rank does G f p phi lookups (column_wise: each block
///     G f p); data_parallel: every rank b f p (its own batch only).
///   communication (bytes sent + received, int64 ids, int32 lengths, float32
///     pooled rows; traffic a rank has with itself is not counted): between
///     a shard's rank and each other rank,
///       X = b f (8 p phi + 4)   ids and lengths in (input dist, forward)
///         + b f c 4             pooled rows out (output dist, forward)
///         + b f c 4             their gradients back (backward),
///     counted for both ranks: the shard's rank (world_size - 1) X, every
///     other rank X. data_parallel: an all-gather of every rank's ids,
///     lengths and pooled-row gradients (no allreduce of the table), so each
///     rank sends and receives (world_size - 1) b f (8 p + 4 + 4 D) each way.
///   Sequence tables (EmbeddingCollection) return one row per id, not per
///   bag; these estimates count them as pooled.
struct RankStats {
  int64_t parameter_bytes = 0;
  int64_t optimizer_bytes = 0;
  double lookups_per_step = 0;
  double comm_bytes_per_step = 0;
  int64_t total_bytes() const { return parameter_bytes + optimizer_bytes; }
};

struct PlanStats {
  std::vector<RankStats> ranks;
  double balance = 1;  // max / mean of per-rank total bytes (1 when nothing is placed)
};

/// InputError if the plan names a table not in `tables`.
PlanStats plan_stats(const ShardingPlan& plan, const std::vector<TableShape>& tables, const PlannerOptions& options);

/// TorchRec-planner-like text: the settings, per table (module.table, type,
/// ranks, rows x dim, parameter and optimizer bytes), per rank (parameter +
/// optimizer bytes, lookups/step, comm bytes/step), then the balance.
std::string format_plan(const ShardingPlan& plan, const std::vector<TableShape>& tables, const PlannerOptions& options);

/// The same as one JSON object: settings, "tables" (with shards), "ranks", "balance".
nlohmann::json plan_to_json(const ShardingPlan& plan, const std::vector<TableShape>& tables,
                            const PlannerOptions& options);

/// "64G", "512M", "1.5T", "100K", "64GiB", "64GB" (K/M/G/T = powers of 1024,
/// case-insensitive) or plain bytes ("1073741824"); nullopt for anything else.
std::optional<double> parse_byte_size(const std::string& text);

/// "0-3,5,7-8": a sorted rank list as ranges.
std::string format_ranks(std::vector<int64_t> ranks);

}  // namespace recmod::dist
