#pragma once
// ManagedCollisionEmbeddingBagCollection and
// ManagedCollisionEmbeddingCollection, as torchrec.modules.mc_embedding_modules
// (the EC variant from v0.7.0): a ManagedCollisionCollection remaps the ids,
// then an EmbeddingBagCollection / EmbeddingCollection looks them up.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <optional>
#include <utility>
#include <vector>

#include "recmod/mc/mc_collection.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod {

/// The tables of embedding configs as ManagedCollisionCollection sees them
/// (empty feature_names stand for [name], as in the embedding modules).
std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingBagConfig>& configs);
std::vector<ManagedTableConfig> managed_table_configs(const std::vector<EmbeddingConfig>& configs);

/// TorchRec's mc_embedding_modules.evict(evictions, module). In TorchRec it
/// is a no-op (a TODO): embedding rows of slots given to new ids keep their
/// old values; that is what happens here unless reset_evicted_rows, which
/// re-draws exactly those rows with their table's init (config init_fn, or
/// uniform(weight_init_min, weight_init_max), default +-sqrt(1/num_embeddings)).
void evict(const TableEvictions& evictions, EmbeddingBagCollectionImpl& ebc, bool reset_evicted_rows = false);
void evict(const TableEvictions& evictions, EmbeddingCollectionImpl& ec, bool reset_evicted_rows = false);

/// forward(kjt) = (ebc(mcc(kjt)), remapped kjt if return_remapped_features),
/// calling evict() after every lookup. The EBC and the MCC must describe the
/// same tables. State: `_embedding_bag_collection.*`,
/// `_managed_collision_collection.*`.
class ManagedCollisionEmbeddingBagCollectionImpl : public torch::nn::Module {
 public:
  ManagedCollisionEmbeddingBagCollectionImpl(EmbeddingBagCollection embedding_bag_collection,
                                             ManagedCollisionCollection managed_collision_collection,
                                             bool return_remapped_features = false,
                                             bool reset_evicted_rows = false);

  std::pair<KeyedTensor, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);

  EmbeddingBagCollection& embedding_bag_collection() { return ebc_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }
  bool reset_evicted_rows() const { return reset_evicted_rows_; }
  void set_reset_evicted_rows(bool reset) { reset_evicted_rows_ = reset; }

 private:
  EmbeddingBagCollection ebc_;
  ManagedCollisionCollection mcc_;
  bool return_remapped_features_;
  bool reset_evicted_rows_;
};
TORCH_MODULE(ManagedCollisionEmbeddingBagCollection);

/// The same around an EmbeddingCollection. As TorchRec v0.7.0 it registers
/// the EC twice, so its state_dict has `_embedding_module.*` and
/// `_embedding_collection.*` (the same tensors), after
/// `_managed_collision_collection.*`. Note: the C++ frontend's parameters()
/// does not remove the duplicates; an optimizer must be given unique tensors
/// (see unique_parameters()).
class ManagedCollisionEmbeddingCollectionImpl : public torch::nn::Module {
 public:
  ManagedCollisionEmbeddingCollectionImpl(EmbeddingCollection embedding_collection,
                                          ManagedCollisionCollection managed_collision_collection,
                                          bool return_remapped_features = false, bool reset_evicted_rows = false);

  std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);

  EmbeddingCollection& embedding_collection() { return ec_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }
  bool reset_evicted_rows() const { return reset_evicted_rows_; }
  void set_reset_evicted_rows(bool reset) { reset_evicted_rows_ = reset; }
  /// Each parameter once (parameters() lists the EC's weights twice).
  std::vector<torch::Tensor> unique_parameters() const;

 private:
  ManagedCollisionCollection mcc_;
  EmbeddingCollection ec_;
  bool return_remapped_features_;
  bool reset_evicted_rows_;
};
TORCH_MODULE(ManagedCollisionEmbeddingCollection);

}  // namespace recmod
