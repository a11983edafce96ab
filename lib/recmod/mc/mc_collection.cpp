#include "recmod/mc/mc_collection.h"

#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod {

namespace {

/// feature -> table as TorchRec builds it (a later table wins a feature
/// shared by several), grouped into table -> features in first-seen order.
std::vector<std::pair<std::string, std::vector<std::string>>> group_features_by_table(
    const std::vector<ManagedTableConfig>& configs) {
  std::vector<std::pair<std::string, std::string>> feature_to_table;
  for (const auto& config : configs)
    for (const auto& feature : config.feature_names) {
      auto it = std::find_if(feature_to_table.begin(), feature_to_table.end(),
                             [&](const auto& kv) { return kv.first == feature; });
      if (it == feature_to_table.end())
        feature_to_table.emplace_back(feature, config.name);
      else
        it->second = config.name;
    }
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& [feature, table] : feature_to_table) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& kv) { return kv.first == table; });
    if (it == out.end())
      out.push_back({table, {feature}});
    else
      it->second.push_back(feature);
  }
  return out;
}

template <typename Config>
std::vector<ManagedTableConfig> managed_tables_of(const std::vector<Config>& configs) {
  std::vector<ManagedTableConfig> out;
  for (const auto& c : configs)
    out.push_back({c.name, c.num_embeddings, c.feature_names.empty() ? std::vector<std::string>{c.name} : c.feature_names});
  return out;
}

}  // namespace

ManagedCollisionCollectionImpl::ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                                               const std::vector<EmbeddingBagConfig>& embedding_configs)
    : ManagedCollisionCollectionImpl(std::move(managed_collision_modules), managed_tables_of(embedding_configs)) {}

ManagedCollisionCollectionImpl::ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                                               const std::vector<EmbeddingConfig>& embedding_configs)
    : ManagedCollisionCollectionImpl(std::move(managed_collision_modules), managed_tables_of(embedding_configs)) {}

ManagedCollisionCollectionImpl::ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                                               std::vector<ManagedTableConfig> embedding_configs)
    : modules_(std::move(managed_collision_modules)), embedding_configs_(std::move(embedding_configs)) {
  std::vector<std::string> module_names;
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> children;
  for (const auto& [table, module] : modules_) {
    if (!module) throw_input_error("ManagedCollisionCollection: the module of table '", table, "' is null");
    children.emplace_back(table, module);
    module_names.push_back(table);
  }
  managed_collision_modules_ = register_module("_managed_collision_modules", torch::nn::ModuleDict(children));
  for (const auto& config : embedding_configs_) {
    const auto module = module_for(config.name);
    if (!module)
      throw_input_error("ManagedCollisionCollection: table '", config.name,
                        "' is not present in managed_collision_modules ", join_names(module_names));
    if (module->output_size() != config.num_embeddings)
      throw_input_error("ManagedCollisionCollection: the managed collision module of table '", config.name,
                        "' has output size ", module->output_size(), ", expected the table's num_embeddings ",
                        config.num_embeddings);
  }
  table_to_features_ = group_features_by_table(embedding_configs_);
}

std::shared_ptr<ManagedCollisionModuleImpl> ManagedCollisionCollectionImpl::module_for(const std::string& table) const {
  for (const auto& [name, module] : modules_)
    if (name == table) return module;
  return nullptr;
}

JtDict ManagedCollisionCollectionImpl::apply_to_tables(const std::string& method, JtDict features) const {
  auto position = [&](const std::string& feature) -> size_t {
    for (size_t i = 0; i < features.size(); ++i)
      if (features[i].first == feature) return i;
    std::vector<std::string> present;
    for (const auto& kv : features) present.push_back(kv.first);
    throw_input_error("ManagedCollisionCollection: feature '", feature, "' of its tables is missing from the input ",
                      join_names(present));
  };
  for (const auto& [table, table_features] : table_to_features_) {
    JtDict input;
    for (const auto& feature : table_features) input.emplace_back(feature, features[position(feature)].second);
    const JtDict output = apply_mc_method_to_jt_dict(*module_for(table), method, input);
    for (const auto& [feature, jt] : output) features[position(feature)].second = jt;
  }
  return features;
}

KeyedJaggedTensor ManagedCollisionCollectionImpl::forward(const KeyedJaggedTensor& features) {
  JtDict dict = features.to_dict();
  dict = apply_to_tables("preprocess", std::move(dict));
  dict = apply_to_tables("profile", std::move(dict));
  dict = apply_to_tables("remap", std::move(dict));
  if (dict.empty()) return features;
  return KeyedJaggedTensor::from_jt_dict(dict);
}

TableEvictions ManagedCollisionCollectionImpl::evict() {
  TableEvictions out;
  for (const auto& [table, module] : modules_) out.emplace_back(table, module->evict());
  return out;
}

}  // namespace recmod
