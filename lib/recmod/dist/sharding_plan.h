#pragma once
// Where each embedding table lives across the ranks of a distributed run,
// with TorchRec's names (torchrec.distributed.types.ShardingType), and the
// planner that chooses it (TorchRec's EmbeddingShardingPlanner role): a
// calculation, so it answers for any world size without running anything.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace recmod::dist {

/// TorchRec's ShardingType values, spelled as TorchRec spells them.
enum class ShardingType {
  data_parallel,  // every rank holds the whole table; updates agree everywhere
  table_wise,     // one rank holds the whole table
  row_wise,       // every rank holds a contiguous block of rows
  column_wise,    // several ranks hold a contiguous block of columns each
};

/// "data_parallel", "table_wise", "row_wise", "column_wise".
const std::vector<std::string>& sharding_type_names();
std::string name_of(ShardingType type);
/// nullopt for anything but the four names above.
std::optional<ShardingType> sharding_type_from(const std::string& name);

/// One shard: rows [row_offset, row_offset + rows) and columns
/// [col_offset, col_offset + cols) of a table, held by `rank`.
struct Shard {
  int64_t rank = 0;
  int64_t row_offset = 0;
  int64_t rows = 0;
  int64_t col_offset = 0;
  int64_t cols = 0;
};

/// What the planner needs to know about a table. `module` is the config
/// node (module path) that owns it: table names are unique per node only.
struct TableShape {
  std::string module;
  std::string name;
  int64_t num_embeddings = 0;
  int64_t embedding_dim = 0;
  std::vector<std::string> feature_names;
  int64_t bytes_per_element = 4;  // the storage dtype's size
};

/// A table's placement. Shards of one table are on distinct ranks, in
/// row order (row_wise) or column order (column_wise).
///   data_parallel: one full shard per rank (0..world_size-1)
///   table_wise:    one full shard
///   row_wise:      one row block per rank (0..world_size-1), ceil-split as
///                  TorchRec does (rows = ceil(N / world), the last ones smaller,
///                  possibly empty)
///   column_wise:   one column block per listed rank
struct TablePlan {
  std::string module;
  std::string table;
  ShardingType type = ShardingType::table_wise;
  std::vector<Shard> shards;
};

struct ShardingPlan {
  int64_t world_size = 1;
  std::vector<TablePlan> tables;
  /// nullptr when the plan has no such table.
  const TablePlan* find(const std::string& module, const std::string& table) const;
};

/// What a config's `sharding:` section asks for one table: a type, and
/// optionally the ranks (table_wise: one rank; column_wise: the ranks of
/// its column blocks). Unset fields are the planner's choice.
struct TableRequest {
  std::optional<ShardingType> type;
  std::vector<int64_t> ranks;
};

/// The `sharding:` section: per table (keyed "table" or "module.table"),
/// what the user fixed; every other table is planned automatically.
struct ShardingRequest {
  std::map<std::string, TableRequest> tables;
};

}  // namespace recmod::dist
