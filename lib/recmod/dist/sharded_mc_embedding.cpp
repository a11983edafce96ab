#include "recmod/dist/sharded_mc_embedding.h"

#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod::dist {

namespace {

// TorchRec v0.7.0 registers the embedding module under both names.
const std::string kModule = "_embedding_module.";
const std::string kCollection = "_embedding_collection.";

EmbeddingCollection concrete(const ManagedCollisionEmbeddingCollectionImpl& full) { return full.embedding_collection(); }

std::vector<std::string> table_names(const ManagedCollisionEmbeddingCollectionImpl& full) {
  std::vector<std::string> names;
  for (const auto& t : concrete(full)->embedding_configs()) names.push_back(t.name);
  return names;
}

}  // namespace

ShardedManagedCollisionEmbeddingCollectionImpl::ShardedManagedCollisionEmbeddingCollectionImpl(
    ManagedCollisionEmbeddingCollectionImpl& full, const std::string& module, const ShardingPlan& plan,
    std::shared_ptr<Communicator> comm)
    : comm_(std::move(comm)),
      shards_(*full.managed_collision_collection(), table_names(full), module, plan, comm_->world_size(),
              comm_->rank()),
      reset_evicted_rows_(full.reset_evicted_rows()),
      return_remapped_features_(full.return_remapped_features()) {
  const EmbeddingCollection full_ec = concrete(full);
  ec_ = std::make_shared<ShardedEmbeddingCollectionImpl>(*full_ec, module, plan, comm_);
  for (size_t t = 0; t < shards_.routing().size(); ++t) ec_->manage_table(static_cast<int64_t>(t), *shards_.routing()[t]);
  mcc_ = shards_.collection();
  register_module("_managed_collision_collection", mcc_);  // v0.7.0's registration order
  register_module("_embedding_module", ec_);
  register_module("_embedding_collection", ec_);
}

JaggedTensorDict ShardedManagedCollisionEmbeddingCollectionImpl::forward_sharded(const KeyedJaggedTensor& features) {
  JaggedTensorDict out = ec_->forward_sharded(features);
  evict_after_lookup();
  return out;
}

void ShardedManagedCollisionEmbeddingCollectionImpl::evict_after_lookup() {
  shards_.evict(reset_evicted_rows_, ec_->full_configs(),
                [this](const std::string& table) -> const torch::Tensor& { return ec_->table_weight(table); });
}

std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> ShardedManagedCollisionEmbeddingCollectionImpl::forward(
    const KeyedJaggedTensor& features) {
  if (!return_remapped_features_) return {forward_sharded(features), std::nullopt};
  std::vector<torch::Tensor> slots;  // per table: its features' global slots, in order
  JaggedTensorDict out = ec_->forward_sharded(features, &slots);
  evict_after_lookup();
  // As ManagedCollisionCollection::forward: the input's features, each of a
  // table with its remapped ids in the input's dtype.
  std::vector<std::pair<std::string, JaggedTensor>> dict = features.to_dict();
  if (dict.empty()) return {std::move(out), features};
  const auto& configs = ec_->full_configs();
  for (size_t t = 0; t < configs.size(); ++t) {
    int64_t start = 0;
    for (const auto& f : configs[t].feature_names) {
      const auto it = std::find_if(dict.begin(), dict.end(), [&](const auto& kv) { return kv.first == f; });
      TORCH_CHECK(it != dict.end(), "sharded MC-EC: feature ", f, " missing after the lookup");
      const JaggedTensor& jt = it->second;
      const int64_t n = jt.values().size(0);
      it->second = JaggedTensor::unchecked(slots[t].narrow(0, start, n).to(jt.values().scalar_type()), jt.lengths(),
                                           jt.offsets(), jt.weights_or_none());
      start += n;
    }
  }
  return {std::move(out), KeyedJaggedTensor::from_jt_dict(dict)};
}

DeferredStateDict ShardedManagedCollisionEmbeddingCollectionImpl::deferred_gather(
    const StateDict& local, const std::vector<TableTensorKind>& kinds, const FullTensorAllocator& allocate) {
  DeferredStateDict out;
  const bool weights = has_weight_kind(kinds);
  if (weights) append_prefixed(out, deferred(shards_.gather(*comm_, keys_under(local, kMcc))), kMcc);
  // The optimizer keeps its state under the first name only.
  const StateDict tables = keys_under(local, kModule);
  append_prefixed(out, ec_->deferred_gather(tables, kinds, allocate), kModule);
  if (weights) append_prefixed(out, ec_->deferred_gather(tables, kinds, allocate), kCollection);
  return out;
}

StateDict ShardedManagedCollisionEmbeddingCollectionImpl::gather(const StateDict& local,
                                                                  const std::vector<TableTensorKind>& kinds) {
  return made_on_rank_zero(*comm_, deferred_gather(local, kinds));
}

StateDict ShardedManagedCollisionEmbeddingCollectionImpl::slice(const StateDict& full,
                                                                 const std::vector<TableTensorKind>& kinds,
                                                                 const std::string& origin) {
  StateDict out;
  const bool weights = has_weight_kind(kinds);
  if (weights) {
    moved_rows_.clear();
    for (auto& [key, value] : shards_.slice(keys_under(full, kMcc), origin, &moved_rows_))
      out.emplace_back(kMcc + key, value);
  }
  const StateDict tables_full = keys_under(full, kModule);
  StateDict tables = ec_->slice(tables_full, kinds, origin);
  move_table_rows(tables, tables_full, moved_rows_, "embeddings.");
  for (const auto& [key, value] : tables) out.emplace_back(kModule + key, value);
  if (weights)
    for (const auto& [key, value] : tables) out.emplace_back(kCollection + key, value);
  return out;
}

}  // namespace recmod::dist
