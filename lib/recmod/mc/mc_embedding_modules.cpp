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

const std::vector<EmbeddingBagConfig>& configs_of(const EmbeddingBagCollectionInterface& m) {
  return m.embedding_bag_configs();
}
const std::vector<EmbeddingConfig>& configs_of(const EmbeddingCollectionInterface& m) { return m.embedding_configs(); }
const char* concrete_name(const EmbeddingBagCollectionInterface&) { return "EmbeddingBagCollection"; }
const char* concrete_name(const EmbeddingCollectionInterface&) { return "EmbeddingCollection"; }
bool is_concrete(const EmbeddingBagCollectionInterface& m) {
  return dynamic_cast<const EmbeddingBagCollectionImpl*>(&m) != nullptr;
}
bool is_concrete(const EmbeddingCollectionInterface& m) {
  return dynamic_cast<const EmbeddingCollectionImpl*>(&m) != nullptr;
}

[[noreturn]] void throw_cannot_reset(const torch::nn::Module& module, const char* needed) {
  throw_input_error("evict: resetting evicted rows needs an ", needed, " (its table_weight); ", module.name(),
                    " is another implementation of its interface");
}

}  // namespace

std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingBagConfig>& configs) {
  return to_managed(configs);
}
std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingConfig>& configs) {
  return to_managed(configs);
}

void evict(const TableEvictions& evictions, EmbeddingBagCollectionInterface& module, bool reset_evicted_rows) {
  if (!reset_evicted_rows) return;
  auto* ebc = dynamic_cast<EmbeddingBagCollectionImpl*>(&module);
  if (!ebc) throw_cannot_reset(module, "EmbeddingBagCollection");
  reset_evicted(evictions, ebc->embedding_bag_configs(), *ebc);
}

void evict(const TableEvictions& evictions, EmbeddingCollectionInterface& module, bool reset_evicted_rows) {
  if (!reset_evicted_rows) return;
  auto* ec = dynamic_cast<EmbeddingCollectionImpl*>(&module);
  if (!ec) throw_cannot_reset(module, "EmbeddingCollection");
  reset_evicted(evictions, ec->embedding_configs(), *ec);
}

// ---- BaseManagedCollisionEmbeddingCollection ----

template <typename EmbeddingModule>
BaseManagedCollisionEmbeddingCollection<EmbeddingModule>::BaseManagedCollisionEmbeddingCollection(
    std::string what, std::shared_ptr<EmbeddingModule> embedding_module,
    ManagedCollisionCollection managed_collision_collection, bool return_remapped_features, bool reset_evicted_rows)
    : what_(std::move(what)),
      embedding_module_(std::move(embedding_module)),
      mcc_(std::move(managed_collision_collection)),
      return_remapped_features_(return_remapped_features) {
  if (!embedding_module_) throw_input_error(what_, ": no embedding module given");
  if (!mcc_) throw_input_error(what_, ": no ManagedCollisionCollection given");
  check_same_tables(what_, concrete_name(*embedding_module_), managed_table_configs(configs_of(*embedding_module_)),
                    mcc_);
  set_reset_evicted_rows(reset_evicted_rows);
}

template <typename EmbeddingModule>
void BaseManagedCollisionEmbeddingCollection<EmbeddingModule>::set_reset_evicted_rows(bool reset) {
  if (reset && !is_concrete(*embedding_module_))
    throw_input_error(what_, ": reset_evicted_rows re-draws the evicted rows of the tables, which needs an ",
                      concrete_name(*embedding_module_), " (its table_weight); ", embedding_module_->name(),
                      " is another implementation of its interface");
  reset_evicted_rows_ = reset;
}

template <typename EmbeddingModule>
std::pair<typename BaseManagedCollisionEmbeddingCollection<EmbeddingModule>::Output, std::optional<KeyedJaggedTensor>>
BaseManagedCollisionEmbeddingCollection<EmbeddingModule>::forward(const KeyedJaggedTensor& features) {
  KeyedJaggedTensor remapped = mcc_->forward(features);
  Output embeddings = embedding_module_->forward(remapped);
  evict(mcc_->evict(), *embedding_module_, reset_evicted_rows_);
  if (!return_remapped_features_) return {std::move(embeddings), std::nullopt};
  return {std::move(embeddings), std::move(remapped)};
}

template class BaseManagedCollisionEmbeddingCollection<EmbeddingBagCollectionInterface>;
template class BaseManagedCollisionEmbeddingCollection<EmbeddingCollectionInterface>;

// ---- ManagedCollisionEmbeddingBagCollection ----

ManagedCollisionEmbeddingBagCollectionImpl::ManagedCollisionEmbeddingBagCollectionImpl(
    EmbeddingBagCollection embedding_bag_collection, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features, bool reset_evicted_rows)
    : ManagedCollisionEmbeddingBagCollectionImpl(
          std::shared_ptr<EmbeddingBagCollectionInterface>(embedding_bag_collection.ptr()),
          std::move(managed_collision_collection), return_remapped_features, reset_evicted_rows) {}

ManagedCollisionEmbeddingBagCollectionImpl::ManagedCollisionEmbeddingBagCollectionImpl(
    std::shared_ptr<EmbeddingBagCollectionInterface> embedding_bag_collection,
    ManagedCollisionCollection managed_collision_collection, bool return_remapped_features, bool reset_evicted_rows)
    : BaseManagedCollisionEmbeddingCollection("ManagedCollisionEmbeddingBagCollection",
                                              std::move(embedding_bag_collection),
                                              std::move(managed_collision_collection), return_remapped_features,
                                              reset_evicted_rows) {
  // v0.6.0's registration order.
  register_module("_embedding_bag_collection", embedding_module_);
  register_module("_managed_collision_collection", mcc_);
}

EmbeddingBagCollection ManagedCollisionEmbeddingBagCollectionImpl::embedding_bag_collection() const {
  auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(embedding_module_);
  if (!ebc)
    throw_input_error(what_, ": the embedding module is ", embedding_module_->name(),
                      ", not an EmbeddingBagCollection; use embedding_module()");
  return EmbeddingBagCollection(ebc);
}

// ---- ManagedCollisionEmbeddingCollection ----

ManagedCollisionEmbeddingCollectionImpl::ManagedCollisionEmbeddingCollectionImpl(
    EmbeddingCollection embedding_collection, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features, bool reset_evicted_rows)
    : ManagedCollisionEmbeddingCollectionImpl(std::shared_ptr<EmbeddingCollectionInterface>(embedding_collection.ptr()),
                                              std::move(managed_collision_collection), return_remapped_features,
                                              reset_evicted_rows) {}

ManagedCollisionEmbeddingCollectionImpl::ManagedCollisionEmbeddingCollectionImpl(
    std::shared_ptr<EmbeddingCollectionInterface> embedding_collection,
    ManagedCollisionCollection managed_collision_collection, bool return_remapped_features, bool reset_evicted_rows)
    : BaseManagedCollisionEmbeddingCollection("ManagedCollisionEmbeddingCollection", std::move(embedding_collection),
                                              std::move(managed_collision_collection), return_remapped_features,
                                              reset_evicted_rows) {
  // v0.7.0's: the base registers the MCC and _embedding_module, the subclass
  // the same module again as _embedding_collection.
  register_module("_managed_collision_collection", mcc_);
  register_module("_embedding_module", embedding_module_);
  register_module("_embedding_collection", embedding_module_);
}

EmbeddingCollection ManagedCollisionEmbeddingCollectionImpl::embedding_collection() const {
  auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(embedding_module_);
  if (!ec)
    throw_input_error(what_, ": the embedding module is ", embedding_module_->name(),
                      ", not an EmbeddingCollection; use embedding_module()");
  return EmbeddingCollection(ec);
}

std::vector<torch::Tensor> ManagedCollisionEmbeddingCollectionImpl::unique_parameters() const {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  for (const auto& p : parameters(/*recurse=*/true))
    if (seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
  return out;
}

}  // namespace recmod
