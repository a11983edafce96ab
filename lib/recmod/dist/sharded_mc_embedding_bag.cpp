#include "recmod/dist/sharded_mc_embedding_bag.h"

#include <torch/torch.h>

#include <limits>

#include "recmod/common/errors.h"

namespace recmod::dist {

namespace {

const std::string kEbc = "_embedding_bag_collection.";

std::vector<std::string> table_names(const EmbeddingBagCollectionImpl& ebc) {
  std::vector<std::string> names;
  for (const auto& t : ebc.embedding_bag_configs()) names.push_back(t.name);
  return names;
}

}  // namespace

ShardedManagedCollisionEmbeddingBagCollectionImpl::ShardedManagedCollisionEmbeddingBagCollectionImpl(
    ManagedCollisionEmbeddingBagCollectionImpl& full, const std::string& module, const ShardingPlan& plan,
    std::shared_ptr<Communicator> comm)
    : comm_(std::move(comm)),
      shards_(*full.managed_collision_collection(), table_names(*full.embedding_bag_collection()), module, plan,
              comm_->world_size(), comm_->rank()),
      reset_evicted_rows_(full.reset_evicted_rows()) {
  const EmbeddingBagCollectionImpl& full_ebc = *full.embedding_bag_collection();
  ebc_ = std::make_shared<ShardedEmbeddingBagCollectionImpl>(full_ebc, module, plan, comm_);
  for (size_t t = 0; t < shards_.routing().size(); ++t)
    ebc_->manage_table(static_cast<int64_t>(t), shards_.full_module(t).options, shards_.routing()[t]->local);
  mcc_ = shards_.collection();
  register_module("_embedding_bag_collection", ebc_);  // v0.6.0's registration order
  register_module("_managed_collision_collection", mcc_);
}

KeyedTensor ShardedManagedCollisionEmbeddingBagCollectionImpl::forward_sharded(const KeyedJaggedTensor& features) {
  KeyedTensor pooled = ebc_->forward_sharded(features);
  shards_.evict(reset_evicted_rows_, ebc_->full_configs(),
                [this](const std::string& table) -> const torch::Tensor& { return ebc_->table_weight(table); });
  return pooled;
}

DeferredStateDict ShardedManagedCollisionEmbeddingBagCollectionImpl::deferred_gather(
    const StateDict& local, const std::vector<TableTensorKind>& kinds, const FullTensorAllocator& allocate) {
  DeferredStateDict out;
  append_prefixed(out, ebc_->deferred_gather(keys_under(local, kEbc), kinds, allocate), kEbc);
  if (has_weight_kind(kinds)) append_prefixed(out, deferred(shards_.gather(*comm_, keys_under(local, kMcc))), kMcc);
  return out;
}

StateDict ShardedManagedCollisionEmbeddingBagCollectionImpl::gather(const StateDict& local,
                                                                     const std::vector<TableTensorKind>& kinds) {
  return made_on_rank_zero(*comm_, deferred_gather(local, kinds));
}

StateDict ShardedManagedCollisionEmbeddingBagCollectionImpl::slice(const StateDict& full,
                                                                    const std::vector<TableTensorKind>& kinds,
                                                                    const std::string& origin) {
  StateDict mc;
  if (has_weight_kind(kinds)) {
    moved_rows_.clear();
    mc = shards_.slice(keys_under(full, kMcc), origin, &moved_rows_);
  }
  const StateDict tables_full = keys_under(full, kEbc);
  StateDict tables = ebc_->slice(tables_full, kinds, origin);
  move_table_rows(tables, tables_full, moved_rows_, "embedding_bags.");
  StateDict out;
  for (auto& [key, value] : tables) out.emplace_back(kEbc + key, value);
  for (auto& [key, value] : mc) out.emplace_back(kMcc + key, value);
  return out;
}

}  // namespace recmod::dist
