#include "recmod/dist/sharded_embedding_bag.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>

#include "recmod/common/errors.h"
#include "recmod/dist/shard_block.h"

namespace recmod::dist {

namespace {

// The input key of slot (table t, feature f) in a holder's local collection:
// unique per slot, since a feature can feed several tables and a row_wise
// table sees only some of its ids.
std::string slot_key(int64_t table, int64_t feature) { return str_cat("t", table, "/f", feature); }

std::vector<TablePlan> plans_of(const EmbeddingBagCollectionImpl& full, const std::string& module,
                                const ShardingPlan& plan) {
  std::vector<std::string> names;
  for (const auto& t : full.embedding_bag_configs()) names.push_back(t.name);
  return plans_of_tables(plan, module, names);
}

/// The local tables of `rank`: one per table it holds a shard of.
std::vector<EmbeddingBagConfig> local_tables(const EmbeddingBagCollectionImpl& full, const std::string& module,
                                             const ShardingPlan& plan, int64_t rank) {
  const auto plans = plans_of(full, module, plan);
  std::vector<EmbeddingBagConfig> out;
  for (size_t t = 0; t < plans.size(); ++t)
    for (const auto& s : plans[t].shards) {
      if (s.rank != rank || !holds_rows(s)) continue;
      EmbeddingBagConfig c = full.embedding_bag_configs()[t];
      c.num_embeddings = s.rows;
      c.embedding_dim = s.cols;
      if (plans[t].type == ShardingType::row_wise) c.pooling = PoolingType::SUM;  // MEAN after the sum
      c.init_fn = [](torch::Tensor&) {};  // the weights are copied from the full table
      for (size_t f = 0; f < c.feature_names.size(); ++f)
        c.feature_names[f] = slot_key(static_cast<int64_t>(t), static_cast<int64_t>(f));
      out.push_back(std::move(c));
    }
  return out;
}

// Column numbers as an index tensor on `device` (the tensor they index).
torch::Tensor as_index(const std::vector<int64_t>& v, const torch::Device& device) {
  const torch::Tensor index = torch::tensor(v, torch::kLong);
  return device.is_cpu() ? index : index.to(device);
}

}  // namespace

/// The output dist as an autograd function: forward sends each rank the
/// pooled rows of its samples, backward sends the gradients back to the
/// holders (data_parallel columns to every holder).
struct PooledExchange : public torch::autograd::Function<PooledExchange> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& pooled,
                               const torch::Tensor& /*anchor*/, ShardedEmbeddingBagCollectionImpl* module,
                               const std::vector<int64_t>& batch_sizes) {
    ctx->saved_data["module"] = reinterpret_cast<int64_t>(module);
    ctx->saved_data["batch_sizes"] = batch_sizes;
    ctx->saved_data["pooled_needs_grad"] = pooled.requires_grad();
    return module->exchange_forward(pooled, batch_sizes);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* module = reinterpret_cast<ShardedEmbeddingBagCollectionImpl*>(ctx->saved_data["module"].toInt());
    const auto batch_sizes = ctx->saved_data["batch_sizes"].toIntVector();
    torch::Tensor grad = grads[0].defined() ? grads[0] : torch::Tensor();
    torch::Tensor pooled_grad = module->exchange_backward(grad, batch_sizes);
    if (!ctx->saved_data["pooled_needs_grad"].toBool()) pooled_grad = torch::Tensor();
    return {pooled_grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

ShardedEmbeddingBagCollectionImpl::ShardedEmbeddingBagCollectionImpl(const EmbeddingBagCollectionImpl& full,
                                                                     const std::string& module,
                                                                     const ShardingPlan& plan,
                                                                     std::shared_ptr<Communicator> comm)
    : EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions(local_tables(full, module, plan, comm->rank()))
                                     .is_weighted(full.is_weighted())
                                     .device(full.device())),
      comm_(std::move(comm)),
      rank_(comm_->rank()),
      world_(comm_->world_size()),
      full_weighted_(full.is_weighted()),
      full_tables_(full.embedding_bag_configs()),
      full_names_(full.embedding_names()),
      full_widths_(full.length_per_embedding()),
      table_plans_(plans_of(full, module, plan)) {
  if (plan.world_size != world_)
    throw InputError(str_cat("the sharding plan is for ", plan.world_size, " ranks, the run has ", world_));
  // Copy this rank's shards of the full tables.
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : embedding_bag_configs()) {
      const auto& p = *std::find_if(table_plans_.begin(), table_plans_.end(), [&](const TablePlan& tp) { return tp.table == t.name; });
      const auto& s = *std::find_if(p.shards.begin(), p.shards.end(), [&](const Shard& x) { return x.rank == rank_ && holds_rows(x); });
      // table_block: copied, or drawn when the full table was never allocated
      take_block(table_weight(t.name), full.table_block(t.name, s.row_offset, s.rows, s.col_offset, s.cols));
    }
  }
  // Every rank's slots, in the order of that rank's local output columns.
  slots_.assign(static_cast<size_t>(world_), {});
  local_width_.assign(static_cast<size_t>(world_), 0);
  for (int64_t o = 0; o < world_; ++o)
    for (size_t t = 0; t < table_plans_.size(); ++t)
      for (const auto& s : table_plans_[t].shards) {
        if (s.rank != o || !holds_rows(s)) continue;
        for (size_t f = 0; f < full_tables_[t].feature_names.size(); ++f) {
          SlotPlacement slot{static_cast<int64_t>(t), static_cast<int64_t>(f), table_plans_[t].type, s,
                             local_width_[static_cast<size_t>(o)]};
          local_width_[static_cast<size_t>(o)] += s.cols;
          slots_[static_cast<size_t>(o)].push_back(slot);
        }
      }
  TORCH_CHECK(local_width_[static_cast<size_t>(rank_)] == output_dim(), "sharded EBC: local layout mismatch");
  // What I send to each rank: all my columns to myself, all but the
  // data_parallel ones to the others (they compute those themselves).
  const auto& mine = slots_[static_cast<size_t>(rank_)];
  for (const auto& slot : mine)
    if (slot.type == ShardingType::data_parallel)
      for (int64_t c = 0; c < slot.shard.cols; ++c) dp_columns_.push_back(slot.column + c);
  sent_columns_.assign(static_cast<size_t>(world_), {});
  for (int64_t r = 0; r < world_; ++r)
    for (const auto& slot : mine)
      if (r == rank_ || slot.type != ShardingType::data_parallel)
        for (int64_t c = 0; c < slot.shard.cols; ++c) sent_columns_[static_cast<size_t>(r)].push_back(slot.column + c);
  received_width_.assign(static_cast<size_t>(world_), std::vector<int64_t>(static_cast<size_t>(world_), 0));
  for (int64_t o = 0; o < world_; ++o)
    for (int64_t r = 0; r < world_; ++r)
      for (const auto& slot : slots_[static_cast<size_t>(o)])
        if (o == r || slot.type != ShardingType::data_parallel) received_width_[static_cast<size_t>(o)][static_cast<size_t>(r)] += slot.shard.cols;
  // Where each output key's pieces sit in the blocks I receive.
  std::vector<std::vector<Piece>> pieces_of(full_names_.size());
  std::vector<int64_t> first_output_of_table(full_tables_.size() + 1, 0);
  for (size_t t = 0; t < full_tables_.size(); ++t)
    first_output_of_table[t + 1] = first_output_of_table[t] + static_cast<int64_t>(full_tables_[t].feature_names.size());
  std::vector<std::vector<int64_t>> col_offset_of(full_names_.size());
  for (int64_t o = 0; o < world_; ++o) {
    int64_t offset = 0;
    for (const auto& slot : slots_[static_cast<size_t>(o)]) {
      if (o != rank_ && slot.type == ShardingType::data_parallel) continue;
      const auto k = static_cast<size_t>(first_output_of_table[static_cast<size_t>(slot.table)] + slot.feature);
      pieces_of[k].push_back(Piece{o, offset, slot.shard.cols});
      col_offset_of[k].push_back(slot.shard.col_offset);
      offset += slot.shard.cols;
    }
  }
  for (size_t t = 0; t < full_tables_.size(); ++t)
    for (size_t f = 0; f < full_tables_[t].feature_names.size(); ++f) {
      const auto k = static_cast<size_t>(first_output_of_table[t]) + f;
      OutputKey key;
      key.feature = full_tables_[t].feature_names[f];
      const ShardingType type = table_plans_[t].type;
      key.sum = type == ShardingType::row_wise;
      key.mean = key.sum && full_tables_[t].pooling == PoolingType::MEAN;
      std::vector<size_t> order(pieces_of[k].size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return col_offset_of[k][a] < col_offset_of[k][b]; });
      for (size_t i : order) key.pieces.push_back(pieces_of[k][i]);
      TORCH_CHECK(!key.pieces.empty(), "sharded EBC: no shard of table ", full_tables_[t].name, " reaches rank ", rank_);
      assembly_.push_back(std::move(key));
    }
  for (size_t t = 0; t < full_tables_.size(); ++t)
    table_states_.push_back(ShardedTableState{full_tables_[t].name, full_tables_[t].num_embeddings,
                                              full_tables_[t].embedding_dim,
                                              weight_storage_dtype(full_tables_[t].data_type), table_plans_[t]});
  anchor_ = torch::zeros({}, torch::requires_grad());
  managed_.resize(full_tables_.size());
}

KeyedJaggedTensor ShardedEmbeddingBagCollectionImpl::distribute_input(const KeyedJaggedTensor& features,
                                                                      const std::vector<int64_t>& batch_sizes) {
  const int64_t b = features.stride();
  const auto index = features.index_per_key();
  const auto& opk = features.offset_per_key();
  const bool weighted = full_weighted_;
  // Per destination: lengths, ids and weights of its slots, from my batch.
  std::map<std::pair<int64_t, int64_t>, torch::Tensor> routed;  // managed tables' hashed ids per (table, feature)
  std::vector<torch::Tensor> lengths_out, values_out, weights_out;
  std::vector<int64_t> length_rows(static_cast<size_t>(world_)), value_rows(static_cast<size_t>(world_));
  for (int64_t o = 0; o < world_; ++o) {
    std::vector<torch::Tensor> lengths, values, weights;
    for (const auto& slot : slots_[static_cast<size_t>(o)]) {
      const std::string& name = full_tables_[static_cast<size_t>(slot.table)].feature_names[static_cast<size_t>(slot.feature)];
      const auto it = index.find(name);
      if (it == index.end())
        throw InputError(str_cat("EmbeddingBagCollection: feature '", name, "' is missing from the input"));
      const int64_t k = it->second;
      torch::Tensor len = features.lengths().narrow(0, k * b, b).to(torch::kLong);
      torch::Tensor ids = features.values().narrow(0, opk[static_cast<size_t>(k)], opk[static_cast<size_t>(k) + 1] - opk[static_cast<size_t>(k)]);
      torch::Tensor w;
      if (weighted) w = features.weights().narrow(0, opk[static_cast<size_t>(k)], ids.size(0));
      if (const auto& m = managed_[static_cast<size_t>(slot.table)]) {
        // Managed collision: ids go by their block of the input space, as they are.
        const auto key = std::make_pair(slot.table, slot.feature);
        auto cached = routed.find(key);
        if (cached == routed.end()) cached = routed.emplace(key, routed_ids(slot, ids)).first;
        ids = cached->second;
        const auto keep = m->in_block_of(ids, o);
        const auto bag = torch::repeat_interleave(torch::arange(b, len.options()), len);
        len = torch::bincount(bag.masked_select(keep), {}, b);
        ids = ids.masked_select(keep);
        if (weighted) w = w.masked_select(keep);
      } else if (slot.type == ShardingType::row_wise) {
        const auto keep = ids.ge(slot.shard.row_offset).logical_and(ids.lt(slot.shard.row_offset + slot.shard.rows));
        const auto bag = torch::repeat_interleave(torch::arange(b, len.options()), len);
        len = torch::bincount(bag.masked_select(keep), {}, b);
        ids = ids.masked_select(keep) - slot.shard.row_offset;
        if (weighted) w = w.masked_select(keep);
      }
      lengths.push_back(len);
      values.push_back(ids.to(torch::kLong));
      if (weighted) weights.push_back(w.to(torch::kFloat));
    }
    length_rows[static_cast<size_t>(o)] = static_cast<int64_t>(lengths.size()) * b;
    const auto on = torch::TensorOptions().device(features.values().device());
    torch::Tensor v = values.empty() ? torch::empty({0}, on.dtype(torch::kLong)) : torch::cat(values);
    value_rows[static_cast<size_t>(o)] = v.size(0);
    lengths_out.push_back(lengths.empty() ? torch::empty({0}, on.dtype(torch::kLong)) : torch::cat(lengths));
    values_out.push_back(v);
    if (weighted) weights_out.push_back(weights.empty() ? torch::empty({0}, on.dtype(torch::kFloat)) : torch::cat(weights));
  }
  const auto& mine = slots_[static_cast<size_t>(rank_)];
  const auto slots = static_cast<int64_t>(mine.size());
  std::vector<int64_t> length_recv(static_cast<size_t>(world_));
  for (int64_t r = 0; r < world_; ++r) length_recv[static_cast<size_t>(r)] = slots * batch_sizes[static_cast<size_t>(r)];
  const torch::Tensor lengths = comm_->all_to_all(torch::cat(lengths_out), length_rows, length_recv);
  // Ids per (source rank, slot), host side, to size the id exchange and reorder.
  std::vector<std::vector<int64_t>> ids_per(static_cast<size_t>(world_));
  std::vector<int64_t> value_recv(static_cast<size_t>(world_), 0);
  const auto length_start = starts_of(length_recv);
  for (int64_t r = 0; r < world_; ++r) {
    const int64_t br = batch_sizes[static_cast<size_t>(r)];
    const torch::Tensor counts = slots == 0 ? torch::zeros({0}, torch::kLong)
                                            : lengths.narrow(0, length_start[static_cast<size_t>(r)], slots * br).view({slots, br}).sum(1).cpu();
    ids_per[static_cast<size_t>(r)] = std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
    for (int64_t c : ids_per[static_cast<size_t>(r)]) value_recv[static_cast<size_t>(r)] += c;
  }
  const torch::Tensor values = comm_->all_to_all(torch::cat(values_out), value_rows, value_recv);
  torch::Tensor weights;
  if (weighted) weights = comm_->all_to_all(torch::cat(weights_out), value_rows, value_recv);
  // Received rank-major (then slot-major); my collection wants slot-major, then rank.
  const auto value_start = starts_of(value_recv);
  std::vector<torch::Tensor> len_parts, val_parts, w_parts;
  std::vector<std::string> keys;
  for (int64_t s = 0; s < slots; ++s) {
    keys.push_back(slot_key(mine[static_cast<size_t>(s)].table, mine[static_cast<size_t>(s)].feature));
    for (int64_t r = 0; r < world_; ++r) {
      const int64_t br = batch_sizes[static_cast<size_t>(r)];
      len_parts.push_back(lengths.narrow(0, length_start[static_cast<size_t>(r)] + s * br, br));
      int64_t offset = value_start[static_cast<size_t>(r)];
      for (int64_t q = 0; q < s; ++q) offset += ids_per[static_cast<size_t>(r)][static_cast<size_t>(q)];
      const int64_t n = ids_per[static_cast<size_t>(r)][static_cast<size_t>(s)];
      val_parts.push_back(values.narrow(0, offset, n));
      if (weighted) w_parts.push_back(weights.narrow(0, offset, n));
    }
  }
  // Managed tables: the holder remaps its ids (TorchRec's sharded MCC
  // compute: profile, then remap to its local slots), all of a table's
  // features in one call, as the unsharded collection does.
  for (size_t t = 0; t < managed_.size(); ++t) {
    const auto& m = managed_[t];
    if (!m || !m->local) continue;
    JtDict input;
    std::vector<int64_t> table_slots;
    for (int64_t s = 0; s < slots; ++s) {
      if (mine[static_cast<size_t>(s)].table != static_cast<int64_t>(t)) continue;
      std::vector<torch::Tensor> v(val_parts.begin() + s * world_, val_parts.begin() + (s + 1) * world_);
      std::vector<torch::Tensor> l(len_parts.begin() + s * world_, len_parts.begin() + (s + 1) * world_);
      input.emplace_back(full_tables_[t].feature_names[static_cast<size_t>(mine[static_cast<size_t>(s)].feature)],
                         JaggedTensor::from_lengths(torch::cat(v), torch::cat(l)));
      table_slots.push_back(s);
    }
    const JtDict remapped = m->local->remap(m->local->profile(input));
    if (m->counts)
      for (size_t i = 0; i < input.size(); ++i)
        m->counts->add(input[i].second.values(), remapped[i].second.values(), m->local->output_size() - 1);
    for (size_t i = 0; i < table_slots.size(); ++i) {
      const int64_t s = table_slots[i];
      int64_t at = 0;
      for (int64_t r = 0; r < world_; ++r) {
        auto& part = val_parts[static_cast<size_t>(s * world_ + r)];
        const int64_t n = part.size(0);
        part = remapped[i].second.values().narrow(0, at, n);
        at += n;
      }
    }
  }
  const int64_t global_batch = std::accumulate(batch_sizes.begin(), batch_sizes.end(), int64_t{0});
  if (slots == 0) return KeyedJaggedTensor::empty(weighted, features.device(), global_batch);
  std::optional<torch::Tensor> w;
  if (weighted) w = torch::cat(w_parts);
  return KeyedJaggedTensor::from_lengths(keys, torch::cat(val_parts), torch::cat(len_parts), w, global_batch);
}

torch::Tensor ShardedEmbeddingBagCollectionImpl::exchange_forward(const torch::Tensor& pooled,
                                                                  const std::vector<int64_t>& batch_sizes) {
  const auto row_start = starts_of(batch_sizes);
  const int64_t my_batch = batch_sizes[static_cast<size_t>(rank_)];
  std::vector<torch::Tensor> send;
  std::vector<int64_t> send_rows, recv_rows;
  for (int64_t r = 0; r < world_; ++r) {
    const auto& cols = sent_columns_[static_cast<size_t>(r)];
    const int64_t br = batch_sizes[static_cast<size_t>(r)];
    send.push_back(pooled.narrow(0, row_start[static_cast<size_t>(r)], br).index_select(1, as_index(cols, pooled.device())).reshape(-1));
    send_rows.push_back(br * static_cast<int64_t>(cols.size()));
    recv_rows.push_back(my_batch * received_width_[static_cast<size_t>(r)][static_cast<size_t>(rank_)]);
  }
  return comm_->all_to_all(torch::cat(send), send_rows, recv_rows);
}

torch::Tensor ShardedEmbeddingBagCollectionImpl::exchange_backward(const torch::Tensor& grad_in,
                                                                   const std::vector<int64_t>& batch_sizes) {
  const int64_t my_batch = batch_sizes[static_cast<size_t>(rank_)];
  std::vector<int64_t> block_size(static_cast<size_t>(world_));
  for (int64_t o = 0; o < world_; ++o) block_size[static_cast<size_t>(o)] = my_batch * received_width_[static_cast<size_t>(o)][static_cast<size_t>(rank_)];
  const auto block_start = starts_of(block_size);
  const torch::Tensor grad =
      grad_in.defined() ? grad_in.contiguous() : torch::zeros({block_start.back()}, torch::TensorOptions().device(device_));
  // My samples' gradients of the data_parallel tables, for every holder.
  const torch::Tensor own = grad.narrow(0, block_start[static_cast<size_t>(rank_)], block_size[static_cast<size_t>(rank_)])
                                .view({my_batch, local_width_[static_cast<size_t>(rank_)]});
  const torch::Tensor dp = own.index_select(1, as_index(dp_columns_, grad.device())).reshape(-1);
  std::vector<torch::Tensor> send;
  std::vector<int64_t> send_rows, recv_rows;
  for (int64_t o = 0; o < world_; ++o) {
    send.push_back(grad.narrow(0, block_start[static_cast<size_t>(o)], block_size[static_cast<size_t>(o)]));
    if (o != rank_) send.push_back(dp);
    send_rows.push_back(block_size[static_cast<size_t>(o)] + (o != rank_ ? dp.size(0) : 0));
    const int64_t br = batch_sizes[static_cast<size_t>(o)];
    recv_rows.push_back(br * (static_cast<int64_t>(sent_columns_[static_cast<size_t>(o)].size()) + (o != rank_ ? dp_width() : 0)));
  }
  const torch::Tensor got = comm_->all_to_all(torch::cat(send), send_rows, recv_rows);
  const auto row_start = starts_of(batch_sizes);
  const auto recv_start = starts_of(recv_rows);
  torch::Tensor pooled_grad = torch::zeros({row_start.back(), local_width_[static_cast<size_t>(rank_)]}, got.options());
  for (int64_t r = 0; r < world_; ++r) {
    const int64_t br = batch_sizes[static_cast<size_t>(r)];
    const auto& cols = sent_columns_[static_cast<size_t>(r)];
    const auto w = static_cast<int64_t>(cols.size());
    torch::Tensor rows = pooled_grad.narrow(0, row_start[static_cast<size_t>(r)], br);
    const int64_t at = recv_start[static_cast<size_t>(r)];
    rows.index_copy_(1, as_index(cols, rows.device()), got.narrow(0, at, br * w).view({br, w}));
    if (r != rank_ && dp_width() > 0)
      rows.index_add_(1, as_index(dp_columns_, rows.device()), got.narrow(0, at + br * w, br * dp_width()).view({br, dp_width()}));
  }
  return pooled_grad;
}

void ShardedEmbeddingBagCollectionImpl::check_ids(const KeyedJaggedTensor& features) const {
  const auto index = features.index_per_key();
  const auto& opk = features.offset_per_key();
  for (size_t ti = 0; ti < full_tables_.size(); ++ti)
    for (const auto& f : full_tables_[ti].feature_names) {
      const auto& t = full_tables_[ti];
      const auto it = index.find(f);
      if (it == index.end())
        throw InputError(str_cat("EmbeddingBagCollection: feature '", f, "' of table '", t.name,
                                 "' is missing from the input, which has ", join_names(features.keys())));
      const auto k = static_cast<size_t>(it->second);
      if (opk[k + 1] == opk[k]) continue;
      if (const auto& m = managed_[ti]) {
        // Raw ids are the managed module's to map; they must fall in its input space.
        m->check_ids(features.values().slice(0, opk[k], opk[k + 1]), "ManagedCollisionEmbeddingBagCollection", f, t.name);
        continue;
      }
      const auto [lo, hi] = torch::aminmax(features.values().slice(0, opk[k], opk[k + 1]));
      const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
      if (min >= 0 && max < t.num_embeddings) continue;
      throw InputError(str_cat("EmbeddingBagCollection: feature '", f, "' has id ", min < 0 ? min : max,
                               ", outside table '", t.name, "' (num_embeddings ", t.num_embeddings,
                               "); hash the feature into range with `hash: mod` or `hash: murmur` in features.sparse"));
    }
}

KeyedTensor ShardedEmbeddingBagCollectionImpl::forward_sharded(const KeyedJaggedTensor& features) {
  check_ids(features);  // here, not on the holder: a bad id must fail on the rank that read it
  if (is_training() && !histories_sized_) size_managed_histories(features);
  const std::vector<int64_t> batch_sizes = comm_->batch_sizes(features.stride());
  device_ = features.values().device();
  const KeyedJaggedTensor global = distribute_input(features, batch_sizes);
  const int64_t global_batch = global.stride();
  torch::Tensor pooled = output_dim() > 0 ? EmbeddingBagCollectionImpl::forward(global).values()
                                          : torch::zeros({global_batch, 0}, torch::TensorOptions().device(device_));
  const torch::Tensor received = PooledExchange::apply(pooled, anchor_, this, batch_sizes);
  const int64_t b = features.stride();
  std::vector<int64_t> block_size(static_cast<size_t>(world_));
  for (int64_t o = 0; o < world_; ++o) block_size[static_cast<size_t>(o)] = b * received_width_[static_cast<size_t>(o)][static_cast<size_t>(rank_)];
  const auto block_start = starts_of(block_size);
  std::vector<torch::Tensor> blocks;
  for (int64_t o = 0; o < world_; ++o)
    blocks.push_back(received.narrow(0, block_start[static_cast<size_t>(o)], block_size[static_cast<size_t>(o)])
                         .view({b, received_width_[static_cast<size_t>(o)][static_cast<size_t>(rank_)]}));
  std::vector<torch::Tensor> outputs;
  for (const auto& key : assembly_) {
    std::vector<torch::Tensor> pieces;
    for (const auto& p : key.pieces) pieces.push_back(blocks[static_cast<size_t>(p.from)].narrow(1, p.offset, p.cols));
    if (!key.sum) {
      outputs.push_back(pieces.size() == 1 ? pieces[0] : torch::cat(pieces, 1));
      continue;
    }
    torch::Tensor total = pieces[0];
    for (size_t i = 1; i < pieces.size(); ++i) total = total + pieces[i];
    if (key.mean) total = total / features[key.feature].lengths().clamp_min(1).to(torch::kFloat).unsqueeze(1);
    outputs.push_back(total);
  }
  return KeyedTensor(full_names_, full_widths_, torch::cat(outputs, 1));
}

void ShardedEmbeddingBagCollectionImpl::manage_table(int64_t table, const MCHManagedCollisionModuleOptions& options,
                                                     std::shared_ptr<MCHManagedCollisionModuleImpl> local) {
  TORCH_CHECK(table >= 0 && table < static_cast<int64_t>(full_tables_.size()), "manage_table: no table ", table);
  managed_[static_cast<size_t>(table)] =
      ManagedRouting::make(table_plans_[static_cast<size_t>(table)], options, world_, rank_, std::move(local));
}

std::shared_ptr<ManagedLookupCounts> ShardedEmbeddingBagCollectionImpl::count_managed_lookups(int64_t table) {
  TORCH_CHECK(table >= 0 && table < static_cast<int64_t>(full_tables_.size()), "count_managed_lookups: no table ", table);
  auto& m = managed_[static_cast<size_t>(table)];
  if (!m || !m->local) return nullptr;
  if (!m->counts) m->counts = std::make_shared<ManagedLookupCounts>();
  return m->counts;
}

std::pair<uint64_t, uint64_t> ShardedEmbeddingBagCollectionImpl::input_block(int64_t table, int64_t shard) const {
  return managed_[static_cast<size_t>(table)]->input_block(shard);
}

torch::Tensor ShardedEmbeddingBagCollectionImpl::routed_ids(const SlotPlacement& slot, const torch::Tensor& ids) const {
  return managed_[static_cast<size_t>(slot.table)]->hashed(ids);
}

void ShardedEmbeddingBagCollectionImpl::size_managed_histories(const KeyedJaggedTensor& features) {
  histories_sized_ = true;
  // The ids of each managed table in my batch; summed, what its unsharded
  // module would size its history from.
  const auto lengths = features.length_per_key();
  const auto index = features.index_per_key();
  std::vector<int64_t> counts(managed_.size(), 0);
  for (size_t t = 0; t < managed_.size(); ++t)
    if (managed_[t])
      for (const auto& f : full_tables_[t].feature_names) {
        const auto it = index.find(f);
        if (it != index.end()) counts[t] += lengths[static_cast<size_t>(it->second)];
      }
  recmod::dist::size_managed_histories(*comm_, managed_, counts);
}

DeferredStateDict ShardedEmbeddingBagCollectionImpl::deferred_gather(const StateDict& local,
                                                   const std::vector<TableTensorKind>& kinds,
                                                   const FullTensorAllocator& allocate) {
  return deferred_table_state(*comm_, "embedding_bags", table_states_, local, kinds, allocate);
}

StateDict ShardedEmbeddingBagCollectionImpl::gather(const StateDict& local, const std::vector<TableTensorKind>& kinds) {
  return gather_table_state(*comm_, "embedding_bags", table_states_, local, kinds);
}

StateDict ShardedEmbeddingBagCollectionImpl::slice(const StateDict& full, const std::vector<TableTensorKind>& kinds,
                                                   const std::string& origin) const {
  return slice_table_state(rank_, "embedding_bags", table_states_, full, kinds, origin);
}

}  // namespace recmod::dist
