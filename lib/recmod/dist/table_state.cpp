#include "recmod/dist/table_state.h"

#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod::dist {

namespace {

std::string table_key(const std::string& prefix, const std::string& table, const std::string& suffix) {
  return prefix + "." + table + ".weight" + suffix;
}

std::vector<int64_t> shape_of(const TableTensorKind& kind, int64_t rows, int64_t cols) {
  return kind.per_row ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
}

/// The dtype of a table's state tensor: the table's storage for the weight, float32 for optimizer state.
torch::Dtype dtype_of(const ShardedTableState& table, const TableTensorKind& kind) {
  return kind.weight ? table.weight_dtype : torch::kFloat;
}

}  // namespace

std::vector<TablePlan> plans_of_tables(const ShardingPlan& plan, const std::string& module,
                                       const std::vector<std::string>& tables) {
  std::vector<TablePlan> out;
  for (const auto& name : tables) {
    const TablePlan* p = plan.find(module, name);
    if (p == nullptr) throw InputError(str_cat("the sharding plan does not place table '", module, ".", name, "'"));
    out.push_back(*p);
  }
  return out;
}

namespace {

/// Collective: the full tensor of one table's state on rank 0 (undefined on
/// the other ranks), assembled from `local`, this rank's shards.
torch::Tensor gather_table_tensor(Communicator& comm, const ShardedTableState& table, const TableTensorKind& kind,
                                  const std::string& key, const StateDict& local, const FullTensorAllocator& allocate) {
  const int64_t rank = comm.rank();
  const auto dtype = dtype_of(table, kind);
  const bool column_wise = table.plan.type == ShardingType::column_wise;
  // The shards cover the table, so only summed per-row states need zeros.
  const bool summed = kind.per_row && column_wise;
  auto own_piece = [&] {  // this rank's shard of the tensor
    const torch::Tensor* mine = find_tensor(local, key);
    TORCH_CHECK(mine != nullptr, "gather_table_state: rank ", rank, " lacks ", key);
    return mine->detach();
  };
  auto used = [&](const Shard& s) {
    return holds_rows(s) && !(table.plan.type == ShardingType::data_parallel && s.rank != 0);  // replicas agree
  };
  // A table rank 0 holds whole (table_wise there, data_parallel) is its own
  // tensor: nothing to receive, nothing to copy.
  const auto n_used = std::count_if(table.plan.shards.begin(), table.plan.shards.end(), used);
  const auto first = std::find_if(table.plan.shards.begin(), table.plan.shards.end(), used);
  if (n_used == 1 && first->rank == 0 && first->rows == table.num_embeddings && first->cols == table.embedding_dim) {
    return rank == 0 ? own_piece() : torch::Tensor();
  }
  // What rank 0 assembles in (`allocate`'s tensors are zero-filled).
  auto buffer = [&](const std::vector<int64_t>& shape) {
    if (allocate)
      if (torch::Tensor given = allocate(shape, dtype); given.defined()) return given;
    return summed ? torch::zeros(shape, dtype) : torch::empty(shape, dtype);
  };
  torch::Tensor full;
  if (rank == 0) full = buffer(shape_of(kind, table.num_embeddings, table.embedding_dim));
  int64_t column_shards = 0;
  for (const auto& s : table.plan.shards) {
    if (!used(s)) continue;
    if (rank != 0) {
      if (s.rank == rank) comm.send(own_piece(), 0);
      continue;
    }
    torch::NoGradGuard no_grad;
    torch::Tensor rows = full.narrow(0, s.row_offset, s.rows);
    if (!kind.per_row) rows = rows.narrow(1, s.col_offset, s.cols);
    // Whole rows are a contiguous block of `full`: received in place, with
    // no buffer of the shard's size beside the table.
    const bool in_place = !summed && rows.is_contiguous();
    torch::Tensor piece;
    if (s.rank == 0) {
      piece = own_piece();
    } else if (in_place) {
      comm.recv(rows, s.rank);
      continue;
    } else {
      piece = buffer(shape_of(kind, s.rows, s.cols));
      comm.recv(piece, s.rank);
    }
    if (summed) {
      rows.add_(piece.to(torch::kCPU, dtype));
      ++column_shards;
    } else {
      rows.copy_(piece);
    }
  }
  if (rank == 0 && column_shards > 1) full.div_(static_cast<double>(column_shards));
  return full;
}

}  // namespace

DeferredStateDict deferred_table_state(Communicator& comm, const std::string& prefix,
                                       const std::vector<ShardedTableState>& tables, const StateDict& local,
                                       const std::vector<TableTensorKind>& kinds,
                                       const FullTensorAllocator& allocate) {
  auto shards = std::make_shared<const StateDict>(local);  // views of the rank's tables: cheap to keep
  DeferredStateDict out;
  for (const auto& table : tables)
    for (const auto& kind : kinds) {
      std::string key = table_key(prefix, table.name, kind.suffix);
      auto make = [&comm, table, kind, key, shards, allocate] {
        return gather_table_tensor(comm, table, kind, key, *shards, allocate);
      };
      out.push_back(DeferredTensor{std::move(key), shape_of(kind, table.num_embeddings, table.embedding_dim),
                                   dtype_of(table, kind), std::move(make)});
    }
  return out;
}

StateDict gather_table_state(Communicator& comm, const std::string& prefix,
                             const std::vector<ShardedTableState>& tables, const StateDict& local,
                             const std::vector<TableTensorKind>& kinds) {
  return made_on_rank_zero(comm, deferred_table_state(comm, prefix, tables, local, kinds));
}

void append_prefixed(DeferredStateDict& out, DeferredStateDict entries, const std::string& prefix) {
  for (auto& entry : entries) {
    entry.key = prefix + entry.key;
    out.push_back(std::move(entry));
  }
}

StateDict made_on_rank_zero(Communicator& comm, const DeferredStateDict& entries) {
  StateDict out;
  for (const auto& entry : entries) {
    torch::Tensor full = entry.make();
    if (comm.rank() == 0) out.emplace_back(entry.key, std::move(full));
  }
  return out;
}

StateDict slice_table_state(int64_t rank, const std::string& prefix, const std::vector<ShardedTableState>& tables,
                            const StateDict& full, const std::vector<TableTensorKind>& kinds,
                            const std::string& origin) {
  StateDict out;
  for (const auto& table : tables)
    for (const auto& s : table.plan.shards) {
      if (s.rank != rank || !holds_rows(s)) continue;
      for (const auto& kind : kinds) {
        const std::string key = table_key(prefix, table.name, kind.suffix);
        const torch::Tensor* value = find_tensor(full, key);
        if (value == nullptr) throw CheckpointError(str_cat(origin, ": missing key '", key, "'"));
        const auto shape = shape_of(kind, table.num_embeddings, table.embedding_dim);
        if (value->sizes() != torch::IntArrayRef(shape))
          throw CheckpointError(str_cat(origin, ": key '", key, "' has shape ", value->sizes(), ", the model expects ",
                                        torch::IntArrayRef(shape)));
        torch::Tensor piece = value->narrow(0, s.row_offset, s.rows);
        if (!kind.per_row) piece = piece.narrow(1, s.col_offset, s.cols);
        out.emplace_back(key, piece);  // a view: the caller copies (in chunks, from a mapped file)
      }
    }
  return out;
}

}  // namespace recmod::dist
