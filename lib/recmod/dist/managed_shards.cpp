#include "recmod/dist/managed_shards.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "recmod/common/errors.h"
#include "recmod/dist/table_state.h"

namespace recmod::dist {

namespace {

const std::string kModules = "_managed_collision_modules.";
constexpr int64_t kEmpty = std::numeric_limits<int64_t>::max();  // an unused slot's raw id
constexpr uint64_t kMaxId = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

/// The shard of `plan` that `rank` holds rows of, or nullptr.
const Shard* rows_of(const TablePlan& plan, int64_t rank) {
  for (const auto& s : plan.shards)
    if (s.rank == rank && holds_rows(s)) return &s;
  return nullptr;
}

}  // namespace

ManagedRouting ManagedRouting::make(const TablePlan& plan, const MCHManagedCollisionModuleOptions& options,
                                    int64_t world, int64_t rank, std::shared_ptr<MCHManagedCollisionModuleImpl> local) {
  if (plan.type != ShardingType::row_wise && plan.type != ShardingType::table_wise)
    throw UsageError(str_cat("managed-collision table '", plan.table, "' is planned ", name_of(plan.type),
                             "; managed-collision tables shard row_wise or table_wise only (TorchRec's too)"));
  ManagedRouting m;
  m.input_size = options.input_hash_size();
  m.hash = options.input_hash_func();
  m.block_of_rank.assign(static_cast<size_t>(world), -1);
  int64_t shards = 0;
  for (const auto& s : plan.shards)
    if (holds_rows(s)) m.block_of_rank[static_cast<size_t>(s.rank)] = shards++;
  TORCH_CHECK(shards > 0, "managed routing: table ", plan.table, " has no rows");
  const auto n = static_cast<uint64_t>(shards);
  m.block = m.input_size / n + (m.input_size % n != 0 ? 1 : 0);  // ceil, without overflow
  m.local = std::move(local);
  TORCH_CHECK(!m.local == (m.block_of_rank[static_cast<size_t>(rank)] < 0), "managed routing: the local module of ",
              plan.table, " does not match this rank's rows");
  return m;
}

std::pair<uint64_t, uint64_t> ManagedRouting::input_block(int64_t shard) const {
  if (shard < 0) return {0, 0};
  const uint64_t first = std::min(input_size, static_cast<uint64_t>(shard) * block);
  return {first, std::min(input_size, first + block)};
}

torch::Tensor ManagedRouting::hashed(const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor long_ids = ids.to(torch::kLong);
  return hash ? (*hash)(long_ids, input_size) : long_ids;
}

torch::Tensor ManagedRouting::in_block_of(const torch::Tensor& hashed_ids, int64_t rank) const {
  const auto [first, last] = input_block(block_of_rank[static_cast<size_t>(rank)]);
  auto keep = torch::zeros_like(hashed_ids, torch::kBool);
  if (first < last) {  // first < 2**63 here
    keep = hashed_ids.ge(static_cast<int64_t>(first));
    if (last <= kMaxId) keep = keep.logical_and(hashed_ids.lt(static_cast<int64_t>(last)));
  }
  return keep;
}

void ManagedRouting::check_ids(const torch::Tensor& ids, const std::string& what, const std::string& feature,
                               const std::string& table) const {
  if (hash || ids.numel() == 0) return;  // hashed into [0, input_hash_size)
  const auto [lo, hi] = torch::aminmax(ids.to(torch::kLong));
  const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  if (min >= 0 && (input_size > kMaxId || static_cast<uint64_t>(max) < input_size)) return;
  throw InputError(str_cat(what, ": feature '", feature, "' has id ", min < 0 ? min : max, ", outside [0, ",
                           input_size, "), the input space of managed table '", table,
                           "' that row-wise sharding splits; set managed_collision.input_hash (mod or murmur3) ",
                           "or an input_hash_size above the largest id"));
}

void size_managed_histories(Communicator& comm, const std::vector<std::optional<ManagedRouting>>& routing,
                            const std::vector<int64_t>& local_counts) {
  std::vector<size_t> tables;
  for (size_t t = 0; t < routing.size(); ++t)
    if (routing[t]) tables.push_back(t);
  if (tables.empty()) return;
  torch::Tensor numel = torch::zeros({static_cast<int64_t>(tables.size())}, torch::kLong);
  for (size_t i = 0; i < tables.size(); ++i) numel[static_cast<int64_t>(i)] = local_counts[tables[i]];
  std::vector<torch::Tensor> buffer{numel};
  comm.all_reduce_sum(buffer);
  for (size_t i = 0; i < tables.size(); ++i)
    if (const auto& local = routing[tables[i]]->local) local->size_history(buffer[0][static_cast<int64_t>(i)].item<int64_t>());
}

ManagedCollisionShards::ManagedCollisionShards(ManagedCollisionCollectionImpl& full,
                                               const std::vector<std::string>& tables, const std::string& module,
                                               const ShardingPlan& plan, int64_t world, int64_t rank)
    : rank_(rank), plans_(plans_of_tables(plan, module, tables)) {
  // Refuse what is not sharded before anything is drawn.
  for (size_t t = 0; t < tables.size(); ++t) {
    auto mch = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(full.module_for(tables[t]));
    if (!mch)
      throw UsageError(str_cat("node '", module, "': table '", tables[t],
                               "' has a managed-collision module that is not an MCH module; it cannot be sharded"));
    if (mch->options.mch_size().value_or(0) > 0)
      throw UsageError(str_cat("node '", module, "': managed-collision table '", tables[t],
                               "' uses mch_size (residual hashing), which distributed training does not shard; "
                               "drop mch_size or train it in one process"));
    if (plans_[t].type != ShardingType::row_wise && plans_[t].type != ShardingType::table_wise)
      throw UsageError(str_cat("node '", module, "': managed-collision table '", tables[t], "' is planned ",
                               name_of(plans_[t].type), "; managed-collision tables are sharded row_wise or "
                               "table_wise only (as in TorchRec); set `sharding: {", tables[t], ": row_wise}`"));
    full_.push_back(mch);
  }
  // This rank's modules: one per table it holds rows of, for those slots.
  ManagedCollisionModules local_modules;
  std::vector<ManagedTableConfig> local_tables;
  const auto& configs = full.embedding_configs();
  for (size_t t = 0; t < tables.size(); ++t) {
    const Shard* s = rows_of(plans_[t], rank);
    std::shared_ptr<MCHManagedCollisionModuleImpl> local;
    if (s != nullptr) {
      local = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(
          full_[t]->rebuild_with_output_id_range({s->row_offset, s->row_offset + s->rows}));
      TORCH_CHECK(local && local->output_size() == s->rows, "sharded MC: rebuilt module of ", tables[t],
                  " has output size ", local ? local->output_size() : -1, ", expected ", s->rows);
      local_modules.emplace_back(tables[t], local);
      const auto it = std::find_if(configs.begin(), configs.end(),
                                   [&](const ManagedTableConfig& c) { return c.name == tables[t]; });
      TORCH_CHECK(it != configs.end(), "sharded MC: the collection has no table ", tables[t]);
      local_tables.push_back({tables[t], s->rows, it->feature_names});
    }
    routing_.push_back(ManagedRouting::make(plans_[t], full_[t]->options, world, rank, local));
  }
  mcc_ = ManagedCollisionCollection(local_modules, local_tables);
  // The unsharded state's keys, to gather into and slice from.
  for (const auto& [key, value] : state_dict(full)) {
    TORCH_CHECK(key.rfind(kModules, 0) == 0, "sharded MC: unexpected key ", key);
    const std::string rest = key.substr(kModules.size());
    const std::string table = rest.substr(0, rest.find('.'));
    const auto it = std::find(tables.begin(), tables.end(), table);
    TORCH_CHECK(it != tables.end(), "sharded MC: key of no table ", key);
    mc_keys_.push_back(McKey{key, static_cast<size_t>(it - tables.begin()), rest.substr(table.size() + 1),
                             value.scalar_type()});
  }
}

void ManagedCollisionShards::reset_evicted(const TableEvictions& evictions,
                                           const std::vector<const BaseEmbeddingConfig*>& configs,
                                           const std::function<const torch::Tensor&(const std::string&)>& weight_of) const {
  torch::NoGradGuard no_grad;
  for (const auto& [table, slots] : evictions) {
    if (!slots || slots->numel() == 0) continue;
    // The unsharded table's init (its bounds follow the full num_embeddings),
    // drawn from a generator seeded by (iteration, table, first row): each
    // shard evicts on its own, and drawing from torch's generator would
    // leave the ranks' generators apart (a resume restores rank 0's on all).
    for (size_t t = 0; t < plans_.size(); ++t) {
      const BaseEmbeddingConfig& config = *configs[t];
      if (config.name != table) continue;
      const torch::Tensor& weight = weight_of(table);
      torch::Tensor fresh = torch::empty({slots->numel(), weight.size(1)}, weight.options());
      if (config.init_fn) {
        config.init_weight(fresh);
      } else {
        const Shard* s = rows_of(plans_[t], rank_);
        const auto& module = routing_[t]->local;
        TORCH_CHECK(s && module, "sharded MC: evictions of a table this rank does not hold: ", table);
        const auto iter = static_cast<uint64_t>(module->named_parameters()["_current_iter_tensor"].item<int64_t>());
        at::Generator generator = at::detail::createCPUGenerator(
            iter * 0x9E3779B97F4A7C15ULL ^ (t + 1) * 0xC2B2AE3D27D4EB4FULL ^ static_cast<uint64_t>(s->row_offset));
        fresh.uniform_(config.get_weight_init_min(), config.get_weight_init_max(), generator);
      }
      // Through the data, as the unsharded module: backward may have saved the weight.
      weight.variable_data().index_put_({slots->to(weight.device(), torch::kLong)}, fresh);
    }
  }
}

StateDict ManagedCollisionShards::gather(Communicator& comm, const StateDict& mine) const {
  StateDict out;
  const int64_t rank = comm.rank();
  // Per table: the shards' buffers, concatenated in row order (slot
  // mappings made global), then sorted by raw id on rank 0.
  for (size_t t = 0; t < plans_.size(); ++t) {
    std::vector<std::pair<const McKey*, torch::Tensor>> gathered;
    for (const auto& k : mc_keys_) {
      if (k.table != t) continue;
      std::vector<torch::Tensor> pieces;
      for (const auto& s : plans_[t].shards) {
        if (!holds_rows(s)) continue;
        torch::Tensor piece;
        if (s.rank == rank) {
          const torch::Tensor* own = find_tensor(mine, k.key);
          TORCH_CHECK(own != nullptr, "sharded MC: rank ", rank, " lacks ", k.key);
          piece = own->detach().to(torch::kCPU).contiguous();
          if (rank != 0) comm.send(piece, 0);
        } else if (rank == 0) {
          piece = torch::empty({per_slot(k) ? s.rows : 1}, k.dtype);
          comm.recv(piece, s.rank);
        }
        if (rank == 0) pieces.push_back(k.buffer == "_mch_remapped_ids_mapping" ? piece + s.row_offset : piece);
        if (!per_slot(k)) break;  // the iteration count: the same on every shard
      }
      if (rank == 0) gathered.emplace_back(&k, torch::cat(pieces));
    }
    if (rank != 0) continue;
    torch::Tensor order;
    for (const auto& [k, value] : gathered)
      if (k->buffer == "_mch_sorted_raw_ids")
        order = std::get<1>(torch::sort(value, /*stable=*/c10::optional<bool>(true), /*dim=*/0));
    for (auto& [k, value] : gathered)
      out.emplace_back(k->key, per_slot(*k) && order.defined() ? value.index_select(0, order) : value);
  }
  return out;
}

StateDict ManagedCollisionShards::slice(const StateDict& mc, const std::string& origin,
                                        std::map<std::string, torch::Tensor>* moved_rows) const {
  StateDict out;
  auto tensor = [&](const McKey& k) -> const torch::Tensor& {
    const torch::Tensor* v = find_tensor(mc, k.key);
    if (v == nullptr) throw CheckpointError(str_cat(origin, ": missing key '", kMcc, k.key, "'"));
    return *v;
  };
  for (size_t t = 0; t < plans_.size(); ++t) {
    const Shard* s = rows_of(plans_[t], rank_);
    if (s == nullptr) continue;
    const std::string& table = plans_[t].table;
    torch::Tensor ids, slots;
    for (const auto& k : mc_keys_)
      if (k.table == t && k.buffer == "_mch_sorted_raw_ids") ids = tensor(k).to(torch::kLong);
      else if (k.table == t && k.buffer == "_mch_remapped_ids_mapping") slots = tensor(k).to(torch::kLong);
    TORCH_CHECK(ids.defined() && slots.defined(), "sharded MC: no slot buffers of ", table);
    if (ids.sizes() != slots.sizes() || ids.dim() != 1)
      throw CheckpointError(str_cat(origin, ": managed-collision table '", table, "': _mch_sorted_raw_ids ",
                                    ids.sizes(), " and _mch_remapped_ids_mapping ", slots.sizes(), " do not match"));
    for (const auto& k : mc_keys_)
      if (k.table == t && per_slot(k) && (tensor(k).dim() != 1 || tensor(k).size(0) != ids.size(0)))
        throw CheckpointError(str_cat(origin, ": key '", kMcc, k.key, "' has shape ", tensor(k).sizes(), ", expected [",
                                      ids.size(0), "]"));
    int64_t table_rows = 0;  // the unsharded module's slots
    for (const auto& shard : plans_[t].shards)
      if (holds_rows(shard)) table_rows += shard.rows;
    if (ids.size(0) != table_rows)
      throw CheckpointError(str_cat(origin, ": managed-collision table '", table, "' has ", ids.size(0),
                                    " entries of _mch_sorted_raw_ids, the model's table ", table_rows, " rows"));
    if (slots.numel() > 0 && (slots.min().item<int64_t>() < 0 || slots.max().item<int64_t>() >= table_rows))
      throw CheckpointError(str_cat(origin, ": managed-collision table '", table,
                                    "': _mch_remapped_ids_mapping has a slot outside [0, ", table_rows, ")"));
    const auto [first, last] = routing_[t]->input_block(routing_[t]->block_of_rank[static_cast<size_t>(rank_)]);
    const torch::Tensor placed = ids.ne(kEmpty);
    torch::Tensor in_block = placed.logical_and(ids.ge(static_cast<int64_t>(first)));
    if (last <= static_cast<uint64_t>(kEmpty)) in_block = in_block.logical_and(ids.lt(static_cast<int64_t>(last)));
    const torch::Tensor in_my_slots = slots.ge(s->row_offset).logical_and(slots.lt(s->row_offset + s->rows));
    // The entries to keep and their local slots: as they are when the
    // checkpoint has exactly this block's ids in this rank's slots (written
    // with this layout), else re-placed (written at another world size or
    // with another plan).
    const bool as_written = in_my_slots.sum().item<int64_t>() == s->rows &&
                            in_block.logical_xor(placed.logical_and(in_my_slots)).sum().item<int64_t>() == 0;
    torch::Tensor take, local_slots;
    if (as_written) {
      take = torch::nonzero(in_my_slots).view(-1);  // in raw-id order (the file's)
      local_slots = slots.index_select(0, take) - s->row_offset;
    } else {
      // This block's ids, in raw-id order, in the first slots, each with its
      // metadata and (moved_rows) its row; the other entries empty, as a new
      // module's. The last entry is never matched (remap searches all but
      // it): rows - 1 ids at most keep their rows.
      take = torch::nonzero(in_block).view(-1);
      const int64_t k = take.numel();
      if (k > s->rows - 1)
        throw CheckpointError(
            str_cat(origin, ": managed-collision table '", table, "' has ", k, " ids placed in the id block [", first,
                    ", ", last, ") of rank ", rank_, ", which holds ", s->rows, " slots of the table (", s->rows - 1,
                    " ids at most); load it with more ranks or with the number of ranks that wrote it"));
      local_slots = torch::arange(s->rows, torch::kLong);
      if (moved_rows != nullptr) {
        // Local row j takes the checkpoint's row of the j-th id; an empty
        // slot keeps the row the checkpoint has at its global index.
        torch::Tensor sources = local_slots + s->row_offset;
        sources.narrow(0, 0, k).copy_(slots.index_select(0, take));
        (*moved_rows)[table] = sources;
      }
    }
    for (const auto& k : mc_keys_) {
      if (k.table != t) continue;
      torch::Tensor v = tensor(k);
      if (k.buffer == "_mch_remapped_ids_mapping") {
        v = local_slots;
      } else if (per_slot(k)) {
        v = v.index_select(0, take);
        if (v.size(0) < s->rows)  // re-placed
          v = torch::cat(
              {v, torch::full({s->rows - v.size(0)}, k.buffer == "_mch_sorted_raw_ids" ? kEmpty : 0, v.options())});
      }
      out.emplace_back(k.key, v.to(k.dtype).contiguous());
    }
  }
  return out;
}

void ManagedLookupCounts::add(const torch::Tensor& hashed, const torch::Tensor& slots, int64_t overflow) {
  const torch::Tensor seen = hashed.to(torch::kLong).cpu().contiguous();
  ids += seen.numel();
  hits += slots.ne(overflow).sum().item<int64_t>();
  distinct.insert(seen.data_ptr<int64_t>(), seen.data_ptr<int64_t>() + seen.numel());
}

void move_table_rows(StateDict& pieces, const StateDict& full, const std::map<std::string, torch::Tensor>& moved,
                     const std::string& prefix) {
  for (auto& [key, piece] : pieces)
    for (const auto& [table, sources] : moved)
      if (key.rfind(prefix + table + ".weight", 0) == 0) {
        const torch::Tensor* whole = find_tensor(full, key);
        TORCH_CHECK(whole != nullptr && whole->size(0) > sources.max().item<int64_t>(), "move_table_rows: no rows of ",
                    key);
        piece = whole->index_select(0, sources);
      }
}

StateDict keys_under(const StateDict& state, const std::string& prefix) {
  StateDict out;
  for (const auto& [key, value] : state)
    if (key.rfind(prefix, 0) == 0) out.emplace_back(key.substr(prefix.size()), value);
  return out;
}

bool has_weight_kind(const std::vector<TableTensorKind>& kinds) {
  for (const auto& k : kinds)
    if (k.weight && k.suffix.empty()) return true;
  return false;
}

}  // namespace recmod::dist
