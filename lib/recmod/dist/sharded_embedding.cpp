#include "recmod/dist/sharded_embedding.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "recmod/common/errors.h"
#include "recmod/dist/shard_block.h"

namespace recmod::dist {

namespace {

std::vector<TablePlan> plans_of(const EmbeddingCollectionImpl& full, const std::string& module,
                                const ShardingPlan& plan) {
  std::vector<std::string> names;
  for (const auto& t : full.embedding_configs()) names.push_back(t.name);
  return plans_of_tables(plan, module, names);
}

/// `rank`'s shard of table `t` that holds something, or nullptr.
const Shard* shard_of(const TablePlan& plan, int64_t rank) {
  for (const auto& s : plan.shards)
    if (s.rank == rank && holds_rows(s)) return &s;
  return nullptr;
}

/// The local tables of `rank` that keep the collection's embedding_dim: the
/// data_parallel tables whole, and one per table it holds a full-width shard
/// of. A column block narrower than the table is a table of its own
/// (ShardedEmbeddingCollectionImpl::narrow_), since an EmbeddingCollection's
/// tables share one embedding_dim.
std::vector<EmbeddingConfig> local_tables(const EmbeddingCollectionImpl& full, const std::string& module,
                                          const ShardingPlan& plan, int64_t rank) {
  const auto plans = plans_of(full, module, plan);
  std::vector<EmbeddingConfig> out;
  for (size_t t = 0; t < plans.size(); ++t) {
    const Shard* s = shard_of(plans[t], rank);
    const EmbeddingConfig& config = full.embedding_configs()[t];
    if (s == nullptr || s->cols != config.embedding_dim) continue;
    EmbeddingConfig c = config;
    c.num_embeddings = s->rows;
    c.init_fn = [](torch::Tensor&) {};  // the weights are copied from the full table
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<int64_t> host_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kLong).contiguous();  // read on the host
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

torch::Tensor cat_or_empty(const std::vector<torch::Tensor>& parts, const torch::Tensor& empty) {
  if (parts.empty()) return empty;
  return parts.size() == 1 ? parts[0].contiguous() : torch::cat(parts);
}

}  // namespace

/// The output dist as an autograd function: forward returns every id's row
/// (flattened: a column block's rows are narrower than the table's) to the
/// rank that sent the id, backward sends the rows' gradients back to the
/// holders. Sizes count elements.
struct RowExchange : public torch::autograd::Function<RowExchange> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& rows,
                               const torch::Tensor& /*anchor*/, ShardedEmbeddingCollectionImpl* module,
                               const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows) {
    ctx->saved_data["module"] = reinterpret_cast<int64_t>(module);
    ctx->saved_data["send_rows"] = send_rows;
    ctx->saved_data["recv_rows"] = recv_rows;
    ctx->saved_data["rows_need_grad"] = rows.requires_grad();
    return module->exchange(rows, send_rows, recv_rows);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* module = reinterpret_cast<ShardedEmbeddingCollectionImpl*>(ctx->saved_data["module"].toInt());
    const auto send_rows = ctx->saved_data["send_rows"].toIntVector();
    const auto recv_rows = ctx->saved_data["recv_rows"].toIntVector();
    const int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
    const torch::Tensor grad = grads[0].defined() ? grads[0].contiguous() : torch::zeros({received});
    torch::Tensor rows_grad = module->exchange(grad, recv_rows, send_rows);
    if (!ctx->saved_data["rows_need_grad"].toBool()) rows_grad = torch::Tensor();
    return {rows_grad, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

ShardedEmbeddingCollectionImpl::ShardedEmbeddingCollectionImpl(const EmbeddingCollectionImpl& full,
                                                               const std::string& module, const ShardingPlan& plan,
                                                               std::shared_ptr<Communicator> comm)
    : EmbeddingCollectionImpl(EmbeddingCollectionOptions(local_tables(full, module, plan, comm->rank()))
                                  .need_indices(full.need_indices())
                                  .device(full.device())
                                  .sparse(full.sparse())),
      comm_(std::move(comm)),
      rank_(comm_->rank()),
      world_(comm_->world_size()),
      module_(module),
      full_tables_(full.embedding_configs()),
      full_names_(full.embedding_names_by_table()),
      table_plans_(plans_of(full, module, plan)) {
  if (plan.world_size != world_)
    throw InputError(str_cat("the sharding plan is for ", plan.world_size, " ranks, the run has ", world_));
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : embedding_configs()) {
      const auto& p = *std::find_if(table_plans_.begin(), table_plans_.end(), [&](const TablePlan& tp) { return tp.table == t.name; });
      const Shard& s = *shard_of(p, rank_);
      // table_block: copied, or drawn when the full table was never allocated
      take_block(table_weight(t.name), full.table_block(t.name, s.row_offset, s.rows, s.col_offset, s.cols));
    }
    // Column blocks narrower than the table: tables of their own, under the
    // same "embeddings.<table>.weight" keys (shape (N, cols)).
    auto dict = std::dynamic_pointer_cast<torch::nn::ModuleDictImpl>(named_children()["embeddings"]);
    TORCH_CHECK(dict != nullptr, "sharded EC: no embeddings ModuleDict");
    for (size_t t = 0; t < table_plans_.size(); ++t) {
      const Shard* s = shard_of(table_plans_[t], rank_);
      const EmbeddingConfig& config = full_tables_[t];
      if (s == nullptr || s->cols == config.embedding_dim) continue;
      EmbeddingConfig c = config;
      c.num_embeddings = s->rows;
      c.embedding_dim = s->cols;
      c.init_fn = [](torch::Tensor&) {};  // allocates a deferred table; the values are copied below
      EmbeddingTable table(s->rows, s->cols, weight_storage_dtype(config.data_type), full.device());
      table->init(c);
      take_block(table->weight, full.table_block(config.name, s->row_offset, s->rows, s->col_offset, s->cols));
      dict->update({{config.name, table.ptr()}});
      narrow_.emplace_back(config.name, table);
    }
  }
  held_.assign(full_tables_.size(), {});
  slots_.assign(static_cast<size_t>(world_), {});
  slot_cols_.assign(static_cast<size_t>(world_), {});
  for (size_t t = 0; t < full_tables_.size(); ++t) {
    if (table_plans_[t].type == ShardingType::data_parallel) continue;
    for (const auto& s : table_plans_[t].shards)
      if (holds_rows(s)) held_[t].push_back(s);
    // row blocks in row order, column blocks in column order
    std::sort(held_[t].begin(), held_[t].end(), [](const Shard& a, const Shard& b) {
      return std::make_pair(a.row_offset, a.col_offset) < std::make_pair(b.row_offset, b.col_offset);
    });
    TORCH_CHECK(!held_[t].empty(), "sharded EC: table ", full_tables_[t].name, " has no shard");
    for (const auto& s : held_[t]) {
      slots_[static_cast<size_t>(s.rank)].push_back(static_cast<int64_t>(t));
      slot_cols_[static_cast<size_t>(s.rank)].push_back(s.cols);
    }
  }
  for (size_t t = 0; t < full_tables_.size(); ++t)
    table_states_.push_back(ShardedTableState{full_tables_[t].name, full_tables_[t].num_embeddings,
                                              full_tables_[t].embedding_dim,
                                              weight_storage_dtype(full_tables_[t].data_type), table_plans_[t]});
  anchor_ = torch::zeros({}, torch::requires_grad());
  managed_.resize(full_tables_.size());
}

void ShardedEmbeddingCollectionImpl::manage_table(int64_t table, const ManagedRouting& routing) {
  TORCH_CHECK(table >= 0 && table < static_cast<int64_t>(full_tables_.size()), "manage_table: no table ", table);
  const auto t = static_cast<size_t>(table);
  if (table_plans_[t].type != ShardingType::row_wise && table_plans_[t].type != ShardingType::table_wise)
    throw UsageError(str_cat("managed-collision table '", full_tables_[t].name, "' is planned ",
                             name_of(table_plans_[t].type), "; managed-collision tables shard row_wise or table_wise only"));
  for (size_t j = 0; j < held_[t].size(); ++j)  // held_ in row order: block j is the j-th shard's
    TORCH_CHECK(routing.block_of_rank[static_cast<size_t>(held_[t][j].rank)] == static_cast<int64_t>(j),
                "manage_table: the input blocks of ", full_tables_[t].name, " are not in row order");
  managed_[t] = routing;
}

std::vector<torch::Tensor> ShardedEmbeddingCollectionImpl::sharded_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& t : embedding_configs()) {
    const auto& p = *std::find_if(table_plans_.begin(), table_plans_.end(), [&](const TablePlan& tp) { return tp.table == t.name; });
    if (p.type != ShardingType::data_parallel) out.push_back(table_weight(t.name));
  }
  for (const auto& [_, table] : narrow_) out.push_back(table->weight);
  return out;
}

const torch::Tensor& ShardedEmbeddingCollectionImpl::local_weight(const std::string& table) const {
  for (const auto& [name, t] : narrow_)
    if (name == table) return t->weight;
  return table_weight(table);
}

void ShardedEmbeddingCollectionImpl::check_ids(const KeyedJaggedTensor& features) const {
  const auto index = features.index_per_key();
  const auto& opk = features.offset_per_key();
  for (size_t ti = 0; ti < full_tables_.size(); ++ti)
    for (const auto& f : full_tables_[ti].feature_names) {
      const auto& t = full_tables_[ti];
      const auto it = index.find(f);
      if (it == index.end())
        throw InputError(str_cat("EmbeddingCollection: feature '", f, "' of table '", t.name,
                                 "' is missing from the input, which has ", join_names(features.keys())));
      const auto k = static_cast<size_t>(it->second);
      if (opk[k + 1] == opk[k]) continue;
      if (const auto& m = managed_[ti]) {  // raw ids: the managed module's input space
        m->check_ids(features.values().slice(0, opk[k], opk[k + 1]), "ManagedCollisionEmbeddingCollection", f, t.name);
        continue;
      }
      const auto [lo, hi] = torch::aminmax(features.values().slice(0, opk[k], opk[k + 1]));
      const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
      if (min >= 0 && max < t.num_embeddings) continue;
      throw InputError(str_cat("nodes.", module_, ": feature '", f, "' has id ", min < 0 ? min : max,
                               ", outside table '", t.name, "' (num_embeddings ", t.num_embeddings,
                               ", ids must be in [0, ", t.num_embeddings,
                               ")); hash the feature into range with `hash: mod` or `hash: murmur` in features.sparse"));
    }
}

torch::Tensor ShardedEmbeddingCollectionImpl::exchange(const torch::Tensor& rows, const std::vector<int64_t>& send_rows,
                                                       const std::vector<int64_t>& recv_rows) {
  return comm_->all_to_all(rows.contiguous(), send_rows, recv_rows);
}

JaggedTensorDict ShardedEmbeddingCollectionImpl::forward_sharded(const KeyedJaggedTensor& features,
                                                                 std::vector<torch::Tensor>* looked_up) {
  check_ids(features);  // here, not on the holder: a bad id must fail on the rank that read it
  if (is_training() && !histories_sized_) {
    histories_sized_ = true;
    std::vector<int64_t> counts(full_tables_.size(), 0);
    const auto lengths = features.length_per_key();
    const auto keys = features.index_per_key();
    for (size_t t = 0; t < full_tables_.size(); ++t)
      for (const auto& f : full_tables_[t].feature_names) counts[t] += lengths[static_cast<size_t>(keys.at(f))];
    size_managed_histories(*comm_, managed_, counts);
  }
  const int64_t b = features.stride();
  const auto index = features.index_per_key();
  const auto& opk = features.offset_per_key();
  const auto world = static_cast<size_t>(world_);
  const torch::Tensor no_ids = torch::empty({0}, features.values().options().dtype(torch::kLong));

  // Input dist: per table, its ids in feature order; per holder, the pieces
  // for its slots (table order) and their counts.
  struct TableIds {
    std::vector<int64_t> keys;
    torch::Tensor ids;      // int64, the table's features' ids in order
    torch::Tensor inverse;  // row_wise over several shards: position of id i among the sent ids
    std::vector<int64_t> counts;  // per held shard
  };
  std::vector<TableIds> tables(full_tables_.size());
  std::vector<std::vector<torch::Tensor>> to(world);
  std::vector<std::vector<int64_t>> counts_to(world);
  for (size_t t = 0; t < full_tables_.size(); ++t) {
    TableIds& in = tables[t];
    std::vector<torch::Tensor> parts;
    for (const auto& f : full_tables_[t].feature_names) {
      const int64_t k = index.at(f);
      in.keys.push_back(k);
      parts.push_back(features.values().slice(0, opk[static_cast<size_t>(k)], opk[static_cast<size_t>(k) + 1]));
    }
    in.ids = cat_or_empty(parts, no_ids).to(torch::kLong);
    const auto& managed = managed_[t];  // sent by input block, hashed and not rebased
    if (managed) in.ids = managed->hashed(in.ids);
    const auto& shards = held_[t];
    if (shards.empty()) continue;  // data_parallel: looked up here
    if (table_plans_[t].type == ShardingType::column_wise) {  // every column block gets every id
      in.counts.assign(shards.size(), in.ids.size(0));
      for (const auto& shard : shards) {
        const auto o = static_cast<size_t>(shard.rank);
        to[o].push_back(in.ids);
        counts_to[o].push_back(in.ids.size(0));
      }
      continue;
    }
    if (shards.size() == 1) {
      const auto o = static_cast<size_t>(shards[0].rank);
      to[o].push_back(shards[0].row_offset == 0 || managed ? in.ids : in.ids - shards[0].row_offset);
      in.counts = {in.ids.size(0)};
      counts_to[o].push_back(in.ids.size(0));
      continue;
    }
    std::vector<int64_t> ends;
    for (size_t j = 0; j + 1 < shards.size(); ++j)
      ends.push_back(managed ? static_cast<int64_t>(managed->input_block(static_cast<int64_t>(j)).second)
                             : shards[j].row_offset + shards[j].rows);
    const torch::Tensor bucket = torch::bucketize(in.ids, torch::tensor(ends, torch::kLong).to(in.ids.device()), /*out_int32=*/false,
                                                  /*right=*/true);
    const torch::Tensor perm = std::get<1>(torch::sort(bucket, c10::optional<bool>(true), /*dim=*/0, /*descending=*/false));
    in.inverse = torch::empty_like(perm).scatter_(0, perm, torch::arange(perm.size(0), perm.options()));
    in.counts = host_vector(torch::bincount(bucket, {}, static_cast<int64_t>(shards.size())));
    const torch::Tensor sorted = in.ids.index_select(0, perm);
    int64_t start = 0;
    for (size_t j = 0; j < shards.size(); ++j) {
      const auto o = static_cast<size_t>(shards[j].rank);
      to[o].push_back(sorted.narrow(0, start, in.counts[j]) - (managed ? 0 : shards[j].row_offset));
      counts_to[o].push_back(in.counts[j]);
      start += in.counts[j];
    }
  }
  const auto& my_slots = slots_[static_cast<size_t>(rank_)];
  const auto n_slots = static_cast<int64_t>(my_slots.size());
  std::vector<int64_t> slot_rows(world), count_recv(world, n_slots), ids_sent(world);
  std::vector<torch::Tensor> counts_out, ids_out;
  for (size_t o = 0; o < world; ++o) {
    slot_rows[o] = static_cast<int64_t>(counts_to[o].size());
    counts_out.push_back(torch::tensor(counts_to[o], torch::kLong));
    ids_out.push_back(cat_or_empty(to[o], no_ids));
    ids_sent[o] = std::accumulate(counts_to[o].begin(), counts_to[o].end(), int64_t{0});
  }
  const std::vector<int64_t> counts = host_vector(comm_->all_to_all(torch::cat(counts_out), slot_rows, count_recv));
  std::vector<int64_t> ids_recv(world, 0);
  for (size_t r = 0; r < world; ++r)
    for (int64_t s = 0; s < n_slots; ++s) ids_recv[r] += counts[r * static_cast<size_t>(n_slots) + static_cast<size_t>(s)];
  const torch::Tensor received_ids = comm_->all_to_all(torch::cat(ids_out), ids_sent, ids_recv);

  // Lookup: one embedding call per local table over every rank's ids, then
  // the rows back in the order they came (rank, then slot), flattened.
  const auto ids_start = starts_of(ids_recv);
  const auto& my_cols = slot_cols_[static_cast<size_t>(rank_)];
  std::vector<std::vector<torch::Tensor>> part(world);  // [r]: rows for rank r, per slot
  std::vector<int64_t> elems_to(world, 0), elems_from(world, 0);
  // The ids a managed table looked up are its holders' remapped slots: with
  // need_indices or `looked_up`, each holder returns them (made global) to
  // the ranks that sent the raw ids, in the order of the rows.
  bool any_managed = false;
  for (const auto& m : managed_) any_managed = any_managed || m.has_value();
  const bool return_slots = any_managed && (need_indices() || looked_up != nullptr);
  std::vector<std::vector<torch::Tensor>> slot_part(world);  // [r]: global slots for rank r, per managed slot
  std::vector<int64_t> slots_to(world, 0), slots_from(world, 0);
  for (int64_t s = 0; s < n_slots; ++s) {
    const auto& config = full_tables_[static_cast<size_t>(my_slots[static_cast<size_t>(s)])];
    std::vector<torch::Tensor> pieces;
    std::vector<int64_t> sizes;
    for (size_t r = 0; r < world; ++r) {
      int64_t offset = ids_start[r];
      for (int64_t q = 0; q < s; ++q) offset += counts[r * static_cast<size_t>(n_slots) + static_cast<size_t>(q)];
      const int64_t n = counts[r * static_cast<size_t>(n_slots) + static_cast<size_t>(s)];
      pieces.push_back(received_ids.narrow(0, offset, n));
      sizes.push_back(n);
    }
    torch::Tensor ids = cat_or_empty(pieces, no_ids);
    if (const auto& m = managed_[static_cast<size_t>(my_slots[static_cast<size_t>(s)])]; m && m->local) {
      // The holder remaps its block's ids (every rank's, in rank order) to its rows.
      const JtDict input{{config.feature_names[0], JaggedTensor::from_lengths(ids, torch::tensor({ids.size(0)}))}};
      ids = m->local->remap(m->local->profile(input))[0].second.values();
      if (return_slots) {
        // My shard of the table: its n-th row block of mine, n = earlier slots of the table.
        const auto t = static_cast<int64_t>(my_slots[static_cast<size_t>(s)]);
        const auto nth = static_cast<int64_t>(std::count(my_slots.begin(), my_slots.begin() + s, t));
        int64_t row_offset = -1, seen = 0;
        for (const auto& shard : held_[static_cast<size_t>(t)])
          if (shard.rank == rank_ && seen++ == nth) row_offset = shard.row_offset;
        TORCH_CHECK(row_offset >= 0, "sharded EC: no shard of ", config.name, " on rank ", rank_);
        const torch::Tensor global = ids.to(torch::kLong) + row_offset;
        int64_t at = 0;
        for (size_t r = 0; r < world; ++r) {
          slot_part[r].push_back(global.narrow(0, at, sizes[r]));
          slots_to[r] += sizes[r];
          at += sizes[r];
        }
      }
    }
    const torch::Tensor rows = torch::embedding(local_weight(config.name), ids,
                                                /*padding_idx=*/-1, /*scale_grad_by_freq=*/false, sparse())
                                   .to(torch::kFloat32);
    const int64_t w = my_cols[static_cast<size_t>(s)];
    int64_t at = 0;
    for (size_t r = 0; r < world; ++r) {
      part[r].push_back(rows.narrow(0, at, sizes[r]).reshape(-1));
      elems_to[r] += sizes[r] * w;
      at += sizes[r];
    }
  }
  std::vector<torch::Tensor> owned_parts;
  for (size_t r = 0; r < world; ++r)
    for (auto& p : part[r]) owned_parts.push_back(p);
  const torch::Tensor owned = owned_parts.empty() ? torch::zeros({0}) : torch::cat(owned_parts);
  for (size_t o = 0; o < world; ++o)
    for (size_t q = 0; q < counts_to[o].size(); ++q) elems_from[o] += counts_to[o][q] * slot_cols_[o][q];

  // Output dist: my ids' rows, per holder in the order I sent them.
  const torch::Tensor got = RowExchange::apply(owned, anchor_, this, elems_to, elems_from);
  const auto got_start = starts_of(elems_from);
  std::vector<int64_t> cursor(got_start.begin(), got_start.end() - 1);
  // And the managed tables' slots, in the same order (no gradient).
  torch::Tensor got_slots;
  std::vector<int64_t> slot_cursor;
  if (return_slots) {
    for (size_t t = 0; t < full_tables_.size(); ++t)
      if (managed_[t])
        for (size_t j = 0; j < held_[t].size(); ++j) slots_from[static_cast<size_t>(held_[t][j].rank)] += tables[t].counts[j];
    std::vector<torch::Tensor> owned_slots;
    for (size_t r = 0; r < world; ++r)
      for (auto& p : slot_part[r]) owned_slots.push_back(p);
    got_slots = comm_->all_to_all(cat_or_empty(owned_slots, no_ids), slots_to, slots_from);
    const auto slot_start = starts_of(slots_from);
    slot_cursor.assign(slot_start.begin(), slot_start.end() - 1);
  }
  if (looked_up != nullptr) looked_up->assign(full_tables_.size(), torch::Tensor());
  JaggedTensorDict out;
  for (size_t t = 0; t < full_tables_.size(); ++t) {
    const TableIds& in = tables[t];
    const auto& shards = held_[t];
    // The ids this table looked up in its unsharded rows (int64, features in order).
    torch::Tensor looked = in.ids;
    if (managed_[t] && return_slots) {
      std::vector<torch::Tensor> pieces;
      for (size_t j = 0; j < shards.size(); ++j) {
        auto& c = slot_cursor[static_cast<size_t>(shards[j].rank)];
        pieces.push_back(got_slots.narrow(0, c, in.counts[j]));
        c += in.counts[j];
      }
      looked = pieces.size() == 1 ? pieces[0] : torch::cat(pieces).index_select(0, in.inverse);
    }
    if (looked_up != nullptr) (*looked_up)[t] = looked;
    torch::Tensor rows;
    if (shards.empty()) {
      rows = torch::embedding(local_weight(full_tables_[t].name), in.ids, /*padding_idx=*/-1,
                              /*scale_grad_by_freq=*/false, sparse())
                 .to(torch::kFloat32);
    } else {
      std::vector<torch::Tensor> pieces;
      for (size_t j = 0; j < shards.size(); ++j) {
        auto& c = cursor[static_cast<size_t>(shards[j].rank)];
        pieces.push_back(got.narrow(0, c, in.counts[j] * shards[j].cols).view({in.counts[j], shards[j].cols}));
        c += in.counts[j] * shards[j].cols;
      }
      if (pieces.size() == 1)
        rows = pieces[0];
      else if (table_plans_[t].type == ShardingType::column_wise)
        rows = torch::cat(pieces, 1);  // column blocks in column order
      else
        rows = torch::cat(pieces).index_select(0, in.inverse);
    }
    int64_t start = 0;
    for (size_t j = 0; j < in.keys.size(); ++j) {
      const int64_t k = in.keys[j];
      const int64_t n = opk[static_cast<size_t>(k) + 1] - opk[static_cast<size_t>(k)];
      torch::Tensor lengths = features.lengths().slice(0, k * b, (k + 1) * b);
      std::optional<torch::Tensor> ids;
      if (need_indices())
        ids = managed_[t] ? looked.narrow(0, start, n).to(features.values().scalar_type())
                          : features.values().slice(0, opk[static_cast<size_t>(k)], opk[static_cast<size_t>(k) + 1]);
      out.emplace_back(full_names_[t][j], JaggedTensor::unchecked(rows.narrow(0, start, n), lengths,
                                                                  offsets_from_lengths(lengths), ids));
      start += n;
    }
  }
  return out;
}

DeferredStateDict ShardedEmbeddingCollectionImpl::deferred_gather(const StateDict& local,
                                                   const std::vector<TableTensorKind>& kinds,
                                                   const FullTensorAllocator& allocate) {
  return deferred_table_state(*comm_, "embeddings", table_states_, local, kinds, allocate);
}

StateDict ShardedEmbeddingCollectionImpl::gather(const StateDict& local, const std::vector<TableTensorKind>& kinds) {
  return gather_table_state(*comm_, "embeddings", table_states_, local, kinds);
}

StateDict ShardedEmbeddingCollectionImpl::slice(const StateDict& full, const std::vector<TableTensorKind>& kinds,
                                                const std::string& origin) const {
  return slice_table_state(rank_, "embeddings", table_states_, full, kinds, origin);
}

}  // namespace recmod::dist
