#pragma once
// ManagedCollisionCollection, as torchrec.modules.mc_modules: one managed
// collision module per embedding table, applied to the KJT features of that
// table before the embedding lookup.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod {

/// What the collection needs of an embedding config (TorchRec's
/// BaseEmbeddingConfig): the table name, its rows and its features.
struct ManagedTableConfig {
  std::string name;
  int64_t num_embeddings = 0;
  std::vector<std::string> feature_names;
};

/// table -> its managed collision module, in order.
using ManagedCollisionModules = std::vector<std::pair<std::string, std::shared_ptr<ManagedCollisionModuleImpl>>>;

/// Evictions per table in module order; nullopt where no eviction ran.
using TableEvictions = std::vector<std::pair<std::string, std::optional<torch::Tensor>>>;

/// forward(kjt): for every table, preprocess its features, then profile,
/// then remap (each step over all tables before the next), with all features
/// of a table going through its one module. Keys of no table pass through
/// unchanged; the output KJT keeps the input key order.
///
/// Construction checks that every table has a module whose output_size()
/// equals its num_embeddings. State: `_managed_collision_modules.<table>.*`.
class ManagedCollisionCollectionImpl : public torch::nn::Module {
 public:
  ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                 std::vector<ManagedTableConfig> embedding_configs);
  /// From TorchRec's embedding configs, as its constructor takes them (a
  /// table without feature names reads the feature of its own name).
  ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                 const std::vector<EmbeddingBagConfig>& embedding_configs);
  ManagedCollisionCollectionImpl(ManagedCollisionModules managed_collision_modules,
                                 const std::vector<EmbeddingConfig>& embedding_configs);

  KeyedJaggedTensor forward(const KeyedJaggedTensor& features);
  TableEvictions evict();

  const std::vector<ManagedTableConfig>& embedding_configs() const { return embedding_configs_; }
  std::shared_ptr<ManagedCollisionModuleImpl> module_for(const std::string& table) const;
  /// Table -> its features, in TorchRec's order.
  const std::vector<std::pair<std::string, std::vector<std::string>>>& table_to_features() const {
    return table_to_features_;
  }

 private:
  /// One step (apply_mc_method_to_jt_dict's method) over all tables;
  /// features not of a table are kept as they are.
  JtDict apply_to_tables(const std::string& method, JtDict features) const;

  torch::nn::ModuleDict managed_collision_modules_;
  ManagedCollisionModules modules_;
  std::vector<ManagedTableConfig> embedding_configs_;
  std::vector<std::pair<std::string, std::vector<std::string>>> table_to_features_;
};
TORCH_MODULE(ManagedCollisionCollection);

}  // namespace recmod
