#include "recmod/mc/mc_embedding_modules.h"

#include <torch/torch.h>

#include <set>

#include "recmod/common/errors.h"

namespace recmod {

namespace {

template <typename Config>
std::vector<ManagedTableConfig> to_managed(const std::vector<Config>& configs) {
  std::vector<ManagedTableConfig> out;
  for (const auto& c : configs)
    out.push_back(
        {c.name, c.num_embeddings, c.feature_names.empty() ? std::vector<std::string>{c.name} : c.feature_names});
  return out;
}

bool same_tables(const std::vector<ManagedTableConfig>& a, const std::vector<ManagedTableConfig>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].num_embeddings != b[i].num_embeddings ||
        a[i].feature_names != b[i].feature_names)
      return false;
  return true;
}

std::string describe(const std::vector<ManagedTableConfig>& tables) {
  std::vector<std::string> parts;
  for (const auto& t : tables)
    parts.push_back(str_cat(t.name, "(", t.num_embeddings, " rows, ", join_names(t.feature_names), ")"));
  return join_names(parts);
}

void check_same_tables(const std::string& what, const std::string& embedding_module,
                       const std::vector<ManagedTableConfig>& embedding_tables, const ManagedCollisionCollection& mcc) {
  const std::vector<ManagedTableConfig> mcc_tables = to_managed(mcc->embedding_configs());
  if (!same_tables(embedding_tables, mcc_tables))
    throw_input_error(what, ": the ", embedding_module,
                      " and the ManagedCollisionCollection must have the same tables; got ", describe(embedding_tables),
                      " and ", describe(mcc_tables));
}

/// Re-draws rows `slots` of `weight` with the table's init.
void reset_rows(const BaseEmbeddingConfig& config, const torch::Tensor& weight, const torch::Tensor& slots) {
  if (slots.numel() == 0) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor rows = slots.to(weight.device(), torch::kLong);
  torch::Tensor fresh = torch::empty({rows.numel(), weight.size(1)}, weight.options());
  config.init_weight(fresh);
  // Through the data (TorchRec writes weight.data): the rows are reset after
  // this step's lookup, whose backward may have saved the weight, and a
  // write through the variable would bump its version and fail backward.
  weight.variable_data().index_put_({rows}, fresh);
}

template <typename Config, typename Module>
void reset_evicted(const TableEvictions& evictions, const std::vector<Config>& configs, Module& module) {
  for (const auto& [table, slots] : evictions) {
    if (!slots) continue;
    for (const auto& config : configs)
      if (config.name == table) reset_rows(config, module.table_weight(table), *slots);
  }
}

}  // namespace

std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingBagConfig>& configs) {
  return to_managed(configs);
}
std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingConfig>& configs) {
  return to_managed(configs);
}

void evict(const TableEvictions& evictions, EmbeddingBagCollectionImpl& ebc, bool reset_evicted_rows) {
  if (reset_evicted_rows) reset_evicted(evictions, ebc.embedding_bag_configs(), ebc);
}

void evict(const TableEvictions& evictions, EmbeddingCollectionImpl& ec, bool reset_evicted_rows) {
  if (reset_evicted_rows) reset_evicted(evictions, ec.embedding_configs(), ec);
}

// ---- ManagedCollisionEmbeddingBagCollection ----

ManagedCollisionEmbeddingBagCollectionImpl::ManagedCollisionEmbeddingBagCollectionImpl(
    EmbeddingBagCollection embedding_bag_collection, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features, bool reset_evicted_rows)
    : ebc_(std::move(embedding_bag_collection)),
      mcc_(std::move(managed_collision_collection)),
      return_remapped_features_(return_remapped_features),
      reset_evicted_rows_(reset_evicted_rows) {
  check_same_tables("ManagedCollisionEmbeddingBagCollection", "EmbeddingBagCollection",
                    managed_table_configs(ebc_->embedding_bag_configs()), mcc_);
  // v0.6.0's registration order.
  register_module("_embedding_bag_collection", ebc_);
  register_module("_managed_collision_collection", mcc_);
}

std::pair<KeyedTensor, std::optional<KeyedJaggedTensor>> ManagedCollisionEmbeddingBagCollectionImpl::forward(
    const KeyedJaggedTensor& features) {
  KeyedJaggedTensor remapped = mcc_->forward(features);
  KeyedTensor pooled = ebc_->forward(remapped);
  evict(mcc_->evict(), *ebc_, reset_evicted_rows_);
  if (!return_remapped_features_) return {std::move(pooled), std::nullopt};
  return {std::move(pooled), std::move(remapped)};
}

// ---- ManagedCollisionEmbeddingCollection ----

ManagedCollisionEmbeddingCollectionImpl::ManagedCollisionEmbeddingCollectionImpl(
    EmbeddingCollection embedding_collection, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features, bool reset_evicted_rows)
    : mcc_(std::move(managed_collision_collection)),
      ec_(std::move(embedding_collection)),
      return_remapped_features_(return_remapped_features),
      reset_evicted_rows_(reset_evicted_rows) {
  check_same_tables("ManagedCollisionEmbeddingCollection", "EmbeddingCollection",
                    managed_table_configs(ec_->embedding_configs()), mcc_);
  register_module("_managed_collision_collection", mcc_);
  register_module("_embedding_module", ec_);
  register_module("_embedding_collection", ec_);
}

std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> ManagedCollisionEmbeddingCollectionImpl::forward(
    const KeyedJaggedTensor& features) {
  KeyedJaggedTensor remapped = mcc_->forward(features);
  JaggedTensorDict embeddings = ec_->forward(remapped);
  evict(mcc_->evict(), *ec_, reset_evicted_rows_);
  if (!return_remapped_features_) return {std::move(embeddings), std::nullopt};
  return {std::move(embeddings), std::move(remapped)};
}

std::vector<torch::Tensor> ManagedCollisionEmbeddingCollectionImpl::unique_parameters() const {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  for (const auto& p : parameters(/*recurse=*/true))
    if (seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
  return out;
}

}  // namespace recmod
