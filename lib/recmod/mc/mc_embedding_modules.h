#pragma once
// ManagedCollisionEmbeddingBagCollection and
// ManagedCollisionEmbeddingCollection, as torchrec.modules.mc_embedding_modules
// (the EC variant from v0.7.0) and their BaseManagedCollisionEmbeddingCollection:
// a ManagedCollisionCollection remaps the ids, then an EmbeddingBagCollection /
// EmbeddingCollection (or any implementation of their interfaces) looks them up.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/mc/mc_collection.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_interfaces.h"
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
/// Resetting rows needs the tables: InputError unless `module` is an
/// EmbeddingBagCollection / EmbeddingCollection (or derived from one).
void evict(const TableEvictions& evictions, EmbeddingBagCollectionInterface& module, bool reset_evicted_rows = false);
void evict(const TableEvictions& evictions, EmbeddingCollectionInterface& module, bool reset_evicted_rows = false);

/// TorchRec's BaseManagedCollisionEmbeddingCollection, the base of the MC-EBC
/// and MC-EC: a ManagedCollisionCollection remaps the ids, then the embedding
/// module (any EmbeddingBagCollectionInterface / EmbeddingCollectionInterface)
/// looks them up, then evict() runs:
///   forward(kjt) = (module(mcc(kjt)), mcc(kjt) if return_remapped_features).
/// The module and the MCC must describe the same tables (InputError). The
/// subclasses register the two modules under their TorchRec version's names,
/// so the state_dict keys are theirs. reset_evicted_rows needs the concrete
/// EmbeddingBagCollection / EmbeddingCollection (InputError otherwise).
template <typename EmbeddingModule>
class BaseManagedCollisionEmbeddingCollection : public torch::nn::Module {
 public:
  /// KeyedTensor (EBC) or JaggedTensorDict (EC).
  using Output = decltype(std::declval<EmbeddingModule&>().forward(std::declval<const KeyedJaggedTensor&>()));

  std::pair<Output, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);

  /// TorchRec's _embedding_module.
  const std::shared_ptr<EmbeddingModule>& embedding_module() const { return embedding_module_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }
  bool return_remapped_features() const { return return_remapped_features_; }
  bool reset_evicted_rows() const { return reset_evicted_rows_; }
  /// InputError when turning it on for a module without tables to reset.
  void set_reset_evicted_rows(bool reset);

 protected:
  /// `what` names the subclass in errors.
  BaseManagedCollisionEmbeddingCollection(std::string what, std::shared_ptr<EmbeddingModule> embedding_module,
                                          ManagedCollisionCollection managed_collision_collection,
                                          bool return_remapped_features, bool reset_evicted_rows);

  std::string what_;
  std::shared_ptr<EmbeddingModule> embedding_module_;
  ManagedCollisionCollection mcc_;
  bool return_remapped_features_;
  bool reset_evicted_rows_ = false;
};

extern template class BaseManagedCollisionEmbeddingCollection<EmbeddingBagCollectionInterface>;
extern template class BaseManagedCollisionEmbeddingCollection<EmbeddingCollectionInterface>;

/// forward(kjt) = (ebc(mcc(kjt)), remapped kjt if return_remapped_features),
/// calling evict() after every lookup; the embedding module is an
/// EmbeddingBagCollection or any EmbeddingBagCollectionInterface. State
/// (TorchRec v0.6.0's): `_embedding_bag_collection.*`,
/// `_managed_collision_collection.*`.
class ManagedCollisionEmbeddingBagCollectionImpl
    : public BaseManagedCollisionEmbeddingCollection<EmbeddingBagCollectionInterface> {
 public:
  ManagedCollisionEmbeddingBagCollectionImpl(EmbeddingBagCollection embedding_bag_collection,
                                             ManagedCollisionCollection managed_collision_collection,
                                             bool return_remapped_features = false, bool reset_evicted_rows = false);
  ManagedCollisionEmbeddingBagCollectionImpl(std::shared_ptr<EmbeddingBagCollectionInterface> embedding_bag_collection,
                                             ManagedCollisionCollection managed_collision_collection,
                                             bool return_remapped_features = false, bool reset_evicted_rows = false);

  /// TorchRec's _embedding_bag_collection: the module as an
  /// EmbeddingBagCollection; InputError when it is another implementation
  /// of the interface (use embedding_module()).
  EmbeddingBagCollection embedding_bag_collection() const;
};
TORCH_MODULE(ManagedCollisionEmbeddingBagCollection);

/// The same around an EmbeddingCollection (or any
/// EmbeddingCollectionInterface). As TorchRec v0.7.0 it registers the module
/// twice, so its state_dict has `_embedding_module.*` and
/// `_embedding_collection.*` (the same tensors), after
/// `_managed_collision_collection.*`. Note: the C++ frontend's parameters()
/// does not remove the duplicates; an optimizer must be given unique tensors
/// (see unique_parameters()).
class ManagedCollisionEmbeddingCollectionImpl
    : public BaseManagedCollisionEmbeddingCollection<EmbeddingCollectionInterface> {
 public:
  ManagedCollisionEmbeddingCollectionImpl(EmbeddingCollection embedding_collection,
                                          ManagedCollisionCollection managed_collision_collection,
                                          bool return_remapped_features = false, bool reset_evicted_rows = false);
  ManagedCollisionEmbeddingCollectionImpl(std::shared_ptr<EmbeddingCollectionInterface> embedding_collection,
                                          ManagedCollisionCollection managed_collision_collection,
                                          bool return_remapped_features = false, bool reset_evicted_rows = false);

  /// TorchRec's _embedding_collection: the module as an EmbeddingCollection;
  /// InputError when it is another implementation of the interface.
  EmbeddingCollection embedding_collection() const;
  /// Each parameter once (parameters() lists the EC's weights twice).
  std::vector<torch::Tensor> unique_parameters() const;
};
TORCH_MODULE(ManagedCollisionEmbeddingCollection);

}  // namespace recmod
