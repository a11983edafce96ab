#include "recmod/dist/sharded_eviction_tracker.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::dist {

ShardedEvictionTracker::ShardedEvictionTracker(torch::nn::Module& model, std::shared_ptr<Communicator> comm)
    : comm_(std::move(comm)) {
  for (const auto& child : model.named_children())
    if (auto mc = std::dynamic_pointer_cast<ShardedManagedCollisionEmbeddingBagCollectionImpl>(child.value()))
      nodes_.emplace_back(child.key(), mc);
  if (nodes_.empty())
    throw InputError("the model has no ManagedCollisionEmbeddingBagCollection node; nothing to evict");
  for (auto& [name, mc] : nodes_) {
    const auto& configs = mc->embedding_bag_collection().full_configs();
    for (size_t t = 0; t < configs.size(); ++t) {
      Table table;
      table.stats = stats_before_any_batch(name, configs[t]);
      table.counts = mc->embedding_bag_collection().count_managed_lookups(static_cast<int64_t>(t));
      tables_.push_back(std::move(table));
    }
  }
}

void ShardedEvictionTracker::observe(const KeyedJaggedTensor& features) {
  torch::NoGradGuard no_grad;
  size_t at = 0;
  for (auto& [name, mc] : nodes_) {
    mc->train();  // MC modules record ids and evict only in training mode
    const size_t first = at;
    std::vector<torch::Tensor> before;
    for (; at < tables_.size() && tables_[at].stats.node == name; ++at)
      before.push_back(tables_[at].counts
                           ? placed_ids(*mc->managed_collision_collection()->module_for(tables_[at].stats.table),
                                        tables_[at].stats.table)
                           : torch::Tensor());
    mc->forward_sharded(features);  // routes, remaps, evicts (and re-draws) per shard
    for (size_t i = first; i < at; ++i) {
      Table& table = tables_[i];
      if (!table.counts) continue;
      const torch::Tensor after =
          placed_ids(*mc->managed_collision_collection()->module_for(table.stats.table), table.stats.table);
      table.stats.evicted +=
          torch::isin(before[i - first], after, /*assume_unique=*/true, /*invert=*/true).sum().item<int64_t>();
      table.stats.slots_used = after.numel();
    }
  }
}

nlohmann::json ShardedEvictionTracker::to_json() const {
  // Per table: ids, hits, distinct, evicted, slots used; summed over the ranks.
  const auto n = static_cast<int64_t>(tables_.size());
  std::vector<torch::Tensor> sums{torch::zeros({n, 5}, torch::kLong)};
  auto* p = sums[0].data_ptr<int64_t>();
  for (size_t i = 0; i < tables_.size(); ++i) {
    const Table& t = tables_[i];
    if (!t.counts) continue;
    const int64_t row[5] = {t.counts->ids, t.counts->hits, static_cast<int64_t>(t.counts->distinct.size()),
                            t.stats.evicted, t.stats.slots_used};
    std::copy(row, row + 5, p + 5 * static_cast<int64_t>(i));
  }
  comm_->all_reduce_sum(sums);
  const auto* total = sums[0].data_ptr<int64_t>();
  nlohmann::json report = nlohmann::json::array();
  for (size_t i = 0; i < tables_.size(); ++i) {
    TableEvictionStats st = tables_[i].stats;
    const int64_t* row = total + 5 * static_cast<int64_t>(i);
    st.ids_seen = row[0];
    st.hits = row[1];
    st.evicted = row[3];
    st.slots_used = row[4];
    report.push_back(eviction_entry(st, row[2]));
  }
  return report;
}

}  // namespace recmod::dist
