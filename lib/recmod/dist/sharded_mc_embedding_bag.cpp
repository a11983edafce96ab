#include "recmod/dist/sharded_mc_embedding_bag.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <limits>

#include "recmod/common/errors.h"

namespace recmod::dist {

namespace {

const std::string kEbc = "_embedding_bag_collection.";
const std::string kMcc = "_managed_collision_collection.";
const std::string kModules = "_managed_collision_modules.";
constexpr int64_t kEmpty = std::numeric_limits<int64_t>::max();  // an unused slot's raw id

/// The shard of `plan` that `rank` holds rows of, or nullptr.
const Shard* rows_of(const TablePlan& plan, int64_t rank) {
  for (const auto& s : plan.shards)
    if (s.rank == rank && holds_rows(s)) return &s;
  return nullptr;
}

/// Keys under `prefix` with it removed.
StateDict under(const StateDict& state, const std::string& prefix) {
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

}  // namespace

ShardedManagedCollisionEmbeddingBagCollectionImpl::ShardedManagedCollisionEmbeddingBagCollectionImpl(
    ManagedCollisionEmbeddingBagCollectionImpl& full, const std::string& module, const ShardingPlan& plan,
    std::shared_ptr<Communicator> comm)
    : comm_(std::move(comm)), reset_evicted_rows_(full.reset_evicted_rows()) {
  const EmbeddingBagCollectionImpl& full_ebc = *full.embedding_bag_collection();
  std::vector<std::string> names;
  for (const auto& t : full_ebc.embedding_bag_configs()) names.push_back(t.name);
  plans_ = plans_of_tables(plan, module, names);
  // Refuse what is not sharded before anything is drawn.
  std::vector<std::shared_ptr<MCHManagedCollisionModuleImpl>> full_modules;
  for (size_t t = 0; t < names.size(); ++t) {
    auto mch = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(
        full.managed_collision_collection()->module_for(names[t]));
    if (!mch)
      throw UsageError(str_cat("node '", module, "': table '", names[t],
                               "' has a managed-collision module that is not an MCH module; it cannot be sharded"));
    if (mch->options.mch_size().value_or(0) > 0)
      throw UsageError(str_cat("node '", module, "': managed-collision table '", names[t],
                               "' uses mch_size (residual hashing), which distributed training does not shard; "
                               "drop mch_size or train it in one process"));
    if (plans_[t].type != ShardingType::row_wise && plans_[t].type != ShardingType::table_wise)
      throw UsageError(str_cat("node '", module, "': managed-collision table '", names[t], "' is planned ",
                               name_of(plans_[t].type), "; managed-collision tables are sharded row_wise or "
                               "table_wise only (as in TorchRec); set `sharding: {", names[t], ": row_wise}`"));
    full_modules.push_back(mch);
  }
  ebc_ = std::make_shared<ShardedEmbeddingBagCollectionImpl>(full_ebc, module, plan, comm_);
  // This rank's modules: one per table it holds rows of, for those slots.
  ManagedCollisionModules local_modules;
  std::vector<ManagedTableConfig> local_tables;
  for (size_t t = 0; t < names.size(); ++t) {
    const Shard* s = rows_of(plans_[t], comm_->rank());
    std::shared_ptr<MCHManagedCollisionModuleImpl> local;
    if (s != nullptr) {
      local = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(
          full_modules[t]->rebuild_with_output_id_range({s->row_offset, s->row_offset + s->rows}));
      TORCH_CHECK(local && local->output_size() == s->rows, "sharded MC-EBC: rebuilt module of ", names[t],
                  " has output size ", local ? local->output_size() : -1, ", expected ", s->rows);
      local_modules.emplace_back(names[t], local);
      const auto& config = full_ebc.embedding_bag_configs()[t];
      local_tables.push_back({names[t], s->rows, config.feature_names});
    }
    ebc_->manage_table(static_cast<int64_t>(t), full_modules[t]->options, local);
  }
  mcc_ = ManagedCollisionCollection(local_modules, local_tables);
  // The unsharded state's keys, to gather into and slice from.
  for (const auto& [key, value] : state_dict(*full.managed_collision_collection())) {
    TORCH_CHECK(key.rfind(kModules, 0) == 0, "sharded MC-EBC: unexpected key ", key);
    const std::string rest = key.substr(kModules.size());
    const std::string table = rest.substr(0, rest.find('.'));
    const auto it = std::find(names.begin(), names.end(), table);
    TORCH_CHECK(it != names.end(), "sharded MC-EBC: key of no table ", key);
    mc_keys_.push_back(McKey{key, static_cast<size_t>(it - names.begin()), rest.substr(table.size() + 1),
                             value.scalar_type()});
  }
  register_module("_embedding_bag_collection", ebc_);  // v0.6.0's registration order
  register_module("_managed_collision_collection", mcc_);
}

KeyedTensor ShardedManagedCollisionEmbeddingBagCollectionImpl::forward_sharded(const KeyedJaggedTensor& features) {
  KeyedTensor pooled = ebc_->forward_sharded(features);
  reset_evicted(mcc_->evict());
  return pooled;
}

void ShardedManagedCollisionEmbeddingBagCollectionImpl::reset_evicted(const TableEvictions& evictions) {
  if (!reset_evicted_rows_) return;
  torch::NoGradGuard no_grad;
  for (const auto& [table, slots] : evictions) {
    if (!slots || slots->numel() == 0) continue;
    // The unsharded table's init (its bounds follow the full num_embeddings),
    // drawn from a generator seeded by (iteration, table, first row): each
    // shard evicts on its own, and drawing from torch's generator would
    // leave the ranks' generators apart (a resume restores rank 0's on all).
    for (size_t t = 0; t < plans_.size(); ++t) {
      const auto& config = ebc_->full_configs()[t];
      if (config.name != table) continue;
      const torch::Tensor& weight = ebc_->table_weight(table);
      torch::Tensor fresh = torch::empty({slots->numel(), weight.size(1)}, weight.options());
      if (config.init_fn) {
        config.init_weight(fresh);
      } else {
        const Shard* s = rows_of(plans_[t], comm_->rank());
        const auto module = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(mcc_->module_for(table));
        TORCH_CHECK(s && module, "sharded MC-EBC: evictions of a table this rank does not hold: ", table);
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

StateDict ShardedManagedCollisionEmbeddingBagCollectionImpl::gather(const StateDict& local,
                                                                     const std::vector<TableTensorKind>& kinds) {
  StateDict out;
  for (auto& [key, value] : ebc_->gather(under(local, kEbc), kinds)) out.emplace_back(kEbc + key, value);
  if (!has_weight_kind(kinds)) return out;
  const int64_t rank = comm_->rank();
  const StateDict mine = under(local, kMcc);
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
          TORCH_CHECK(own != nullptr, "sharded MC-EBC: rank ", rank, " lacks ", k.key);
          piece = own->detach().to(torch::kCPU).contiguous();
          if (rank != 0) comm_->send(piece, 0);
        } else if (rank == 0) {
          piece = torch::empty({per_slot(k) ? s.rows : 1}, k.dtype);
          comm_->recv(piece, s.rank);
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
      out.emplace_back(kMcc + k->key, per_slot(*k) && order.defined() ? value.index_select(0, order) : value);
  }
  return out;
}

StateDict ShardedManagedCollisionEmbeddingBagCollectionImpl::slice(const StateDict& full,
                                                                    const std::vector<TableTensorKind>& kinds,
                                                                    const std::string& origin) const {
  StateDict out;
  for (auto& [key, value] : ebc_->slice(under(full, kEbc), kinds, origin)) out.emplace_back(kEbc + key, value);
  if (!has_weight_kind(kinds)) return out;
  const StateDict mc = under(full, kMcc);
  auto tensor = [&](const McKey& k) -> const torch::Tensor& {
    const torch::Tensor* v = find_tensor(mc, k.key);
    if (v == nullptr) throw CheckpointError(str_cat(origin, ": missing key '", kMcc, k.key, "'"));
    return *v;
  };
  for (size_t t = 0; t < plans_.size(); ++t) {
    const Shard* s = rows_of(plans_[t], comm_->rank());
    if (s == nullptr) continue;
    const std::string& table = plans_[t].table;
    torch::Tensor ids, slots;
    for (const auto& k : mc_keys_)
      if (k.table == t && k.buffer == "_mch_sorted_raw_ids") ids = tensor(k).to(torch::kLong);
      else if (k.table == t && k.buffer == "_mch_remapped_ids_mapping") slots = tensor(k).to(torch::kLong);
    TORCH_CHECK(ids.defined() && slots.defined(), "sharded MC-EBC: no slot buffers of ", table);
    if (ids.sizes() != slots.sizes() || ids.dim() != 1)
      throw CheckpointError(str_cat(origin, ": managed-collision table '", table, "': _mch_sorted_raw_ids ",
                                    ids.sizes(), " and _mch_remapped_ids_mapping ", slots.sizes(), " do not match"));
    // The entries whose slots are my rows, in raw-id order (the file's).
    const torch::Tensor take = torch::nonzero(slots.ge(s->row_offset).logical_and(slots.lt(s->row_offset + s->rows))).view(-1);
    if (take.numel() != s->rows)
      throw CheckpointError(str_cat(origin, ": managed-collision table '", table, "' maps ", take.numel(),
                                    " ids to slots [", s->row_offset, ", ", s->row_offset + s->rows,
                                    "), expected one per slot (", s->rows, ")"));
    const torch::Tensor my_ids = ids.index_select(0, take);
    const torch::Tensor placed = my_ids.masked_select(my_ids.ne(kEmpty));
    const auto [first, last] = ebc_->input_block(static_cast<int64_t>(t), [&] {
      int64_t i = 0;
      for (const auto& x : plans_[t].shards) {
        if (&x == s) return i;
        if (holds_rows(x)) ++i;
      }
      return int64_t{-1};
    }());
    if (placed.numel() > 0) {
      const auto [lo, hi] = torch::aminmax(placed);
      const auto min = lo.item<int64_t>(), max = hi.item<int64_t>();
      if (min < 0 || static_cast<uint64_t>(min) < first || static_cast<uint64_t>(max) >= last)
        throw CheckpointError(str_cat(
            origin, ": managed-collision table '", table, "' has id ",
            (min < 0 || static_cast<uint64_t>(min) < first) ? min : max, " in slots [", s->row_offset, ", ",
            s->row_offset + s->rows, "), which rank ", comm_->rank(), " holds for ids [", first, ", ", last,
            "); this checkpoint places ids for another world size: resume it with the number of ranks that wrote it"));
    }
    for (const auto& k : mc_keys_) {
      if (k.table != t) continue;
      torch::Tensor v = tensor(k);
      if (per_slot(k)) {
        if (v.dim() != 1 || v.size(0) != ids.size(0))
          throw CheckpointError(str_cat(origin, ": key '", kMcc, k.key, "' has shape ", v.sizes(), ", expected [",
                                        ids.size(0), "]"));
        v = v.index_select(0, take);
        if (k.buffer == "_mch_remapped_ids_mapping") v = v - s->row_offset;
      }
      out.emplace_back(kMcc + k.key, v.to(k.dtype).contiguous());
    }
  }
  return out;
}

}  // namespace recmod::dist
