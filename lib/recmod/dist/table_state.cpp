#include "recmod/dist/table_state.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::dist {

namespace {

std::string table_key(const std::string& prefix, const std::string& table, const std::string& suffix) {
  return prefix + "." + table + ".weight" + suffix;
}

std::vector<int64_t> shape_of(const TableTensorKind& kind, int64_t rows, int64_t cols) {
  return kind.per_row ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
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

StateDict gather_table_state(Communicator& comm, const std::string& prefix,
                             const std::vector<ShardedTableState>& tables, const StateDict& local,
                             const std::vector<TableTensorKind>& kinds) {
  const int64_t rank = comm.rank();
  StateDict out;
  for (const auto& table : tables) {
    for (const auto& kind : kinds) {
      const std::string key = table_key(prefix, table.name, kind.suffix);
      const auto dtype = kind.weight ? table.weight_dtype : torch::kFloat;
      torch::Tensor full;
      if (rank == 0) full = torch::zeros(shape_of(kind, table.num_embeddings, table.embedding_dim), dtype);
      int64_t column_shards = 0;
      for (const auto& s : table.plan.shards) {
        if (!holds_rows(s)) continue;
        if (table.plan.type == ShardingType::data_parallel && s.rank != 0) continue;  // replicas agree
        torch::Tensor piece;
        if (s.rank == rank) {
          const torch::Tensor* mine = find_tensor(local, key);
          TORCH_CHECK(mine != nullptr, "gather_table_state: rank ", rank, " lacks ", key);
          piece = mine->detach().to(torch::kCPU).contiguous();
          if (rank != 0) comm.send(piece, 0);
        } else if (rank == 0) {
          piece = torch::empty(shape_of(kind, s.rows, s.cols), dtype);
          comm.recv(piece, s.rank);
        }
        if (rank != 0) continue;
        torch::NoGradGuard no_grad;
        torch::Tensor rows = full.narrow(0, s.row_offset, s.rows);
        if (!kind.per_row) {
          rows.narrow(1, s.col_offset, s.cols).copy_(piece);
        } else if (table.plan.type == ShardingType::column_wise) {
          rows.add_(piece.to(dtype));
          ++column_shards;
        } else {
          rows.copy_(piece);
        }
      }
      if (rank != 0) continue;
      if (column_shards > 1) full.div_(static_cast<double>(column_shards));
      out.emplace_back(key, full);
    }
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
