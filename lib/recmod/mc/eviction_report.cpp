#include "recmod/mc/eviction_report.h"

#include <torch/torch.h>

#include <limits>

#include "recmod/common/errors.h"

namespace recmod {

torch::Tensor placed_ids(torch::nn::Module& module, const std::string& table) {
  for (const auto& b : module.named_buffers())
    if (b.key() == "_mch_sorted_raw_ids") {
      auto ids = b.value();
      return ids.masked_select(ids != std::numeric_limits<int64_t>::max());
    }
  throw InputError(str_cat("table '", table, "' has no _mch_sorted_raw_ids buffer"));
}

TableEvictionStats stats_before_any_batch(const std::string& node, const EmbeddingBagConfig& table) {
  TableEvictionStats st;
  st.node = node;
  st.table = table.name;
  st.features = table.feature_names;
  st.slots = table.num_embeddings;
  return st;
}

nlohmann::json eviction_entry(const TableEvictionStats& st, int64_t distinct_ids) {
  return {{"node", st.node},           {"table", st.table},         {"ids_seen", st.ids_seen},
          {"distinct_ids", distinct_ids}, {"slots", st.slots},           {"slots_used", st.slots_used},
          {"evicted", st.evicted},     {"hit_rate", st.hit_rate()}};
}

namespace {

// The table's ids, ascending.
torch::Tensor table_ids(ManagedCollisionEmbeddingBagCollectionImpl& mc, const std::string& table) {
  return placed_ids(*mc.managed_collision_collection()->module_for(table), table);
}

}  // namespace

EvictionTracker::EvictionTracker(torch::nn::Module& model) {
  for (const auto& child : model.named_children())
    if (auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(child.value()))
      nodes_.emplace_back(child.key(), mc);
  if (nodes_.empty()) throw InputError("the model has no ManagedCollisionEmbeddingBagCollection node; nothing to evict");
  for (auto& [name, mc] : nodes_)
    for (const auto& t : mc->embedding_bag_collection()->embedding_bag_configs())
      stats_.push_back(stats_before_any_batch(name, t));
}

void EvictionTracker::observe(const KeyedJaggedTensor& sparse) {
  torch::NoGradGuard no_grad;
  size_t s = 0;
  for (auto& [name, mc] : nodes_) {
    mc->train();  // MC modules record ids and evict only in training mode
    std::vector<torch::Tensor> before;
    const size_t first = s;
    for (; s < stats_.size() && stats_[s].node == name; ++s) before.push_back(table_ids(*mc, stats_[s].table));
    const auto remapped = mc->forward(sparse).second;
    TORCH_CHECK(remapped.has_value(), "EvictionTracker: node '", name,
                "' does not return its remapped features (return_remapped_features)");
    for (size_t i = first; i < s; ++i) {
      auto& st = stats_[i];
      for (const auto& f : st.features) {
        auto raw = sparse[f].values().to(torch::kLong).contiguous();
        auto slots = (*remapped)[f].values();
        st.ids_seen += raw.numel();
        st.hits += (slots != st.slots - 1).sum().item<int64_t>();  // slot zch_size-1 takes the ids not in the table
        const int64_t* p = raw.data_ptr<int64_t>();
        st.distinct.insert(p, p + raw.numel());
      }
      auto after = table_ids(*mc, st.table);
      st.evicted += torch::isin(before[i - first], after, /*assume_unique=*/true, /*invert=*/true).sum().item<int64_t>();
      st.slots_used = after.numel();
    }
  }
}

nlohmann::json EvictionTracker::to_json() const {
  nlohmann::json report = nlohmann::json::array();
  for (const auto& st : stats_) report.push_back(eviction_entry(st, static_cast<int64_t>(st.distinct.size())));
  return report;
}

}  // namespace recmod
