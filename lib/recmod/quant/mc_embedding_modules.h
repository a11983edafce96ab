#pragma once
// Quantized managed-collision collections: TorchRec's
// torchrec.quant.embedding_modules.QuantManagedCollisionEmbeddingCollection,
// and the same around a quantized EmbeddingBagCollection (TorchRec has no
// quantized MC-EBC; recmod's follows the MC-EC's layout). The float
// module's ManagedCollisionCollection remaps the ids (in eval mode: no
// profiling, no eviction), then quantized tables look them up. Inference only.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/quant/embedding_modules.h"
#include "recmod/quant/quant_config.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod::quant {

/// forward(kjt) = (ec(mcc(kjt)), mcc(kjt) if return_remapped_features), with
/// `ec` a quantized EmbeddingCollection. state_dict, TorchRec's (the
/// quantized EC is its base class there):
///   embeddings.<t>.weight, .weight_qscale, .weight_qbias   (quantized EC's layout)
///   _managed_collision_collection.*                        (the float module's)
class ManagedCollisionEmbeddingCollectionImpl : public torch::nn::Module {
 public:
  ManagedCollisionEmbeddingCollectionImpl(std::shared_ptr<EmbeddingCollectionImpl> ec,
                                          ManagedCollisionCollection managed_collision_collection,
                                          bool return_remapped_features = false);
  /// TorchRec's from_float: the tables quantized as
  /// EmbeddingCollectionImpl::from_float does, the MCC shared.
  static std::shared_ptr<ManagedCollisionEmbeddingCollectionImpl> from_float(
      recmod::ManagedCollisionEmbeddingCollectionImpl& module, const QuantConfig& config);
  /// The same shape as `module` with tables of `tables`' types, unwritten.
  static std::shared_ptr<ManagedCollisionEmbeddingCollectionImpl> uninitialized_like(
      recmod::ManagedCollisionEmbeddingCollectionImpl& module, std::vector<EmbeddingConfig> tables);

  std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);
  void train(bool on = true) override;

  EmbeddingCollectionImpl& embedding_collection() { return *ec_; }
  const EmbeddingCollectionImpl& embedding_collection() const { return *ec_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }

  /// The tables as the quantized EC loads them, the MCC strictly.
  void load_quantized_state_dict(StateDict state, const std::string& origin);

 private:
  std::shared_ptr<EmbeddingCollectionImpl> ec_;
  ManagedCollisionCollection mcc_;
  bool return_remapped_features_;
};
TORCH_MODULE(ManagedCollisionEmbeddingCollection);

/// The same around a quantized EmbeddingBagCollection: forward(kjt) =
/// (ebc(mcc(kjt)), mcc(kjt) if return_remapped_features). state_dict:
///   embedding_bags.<t>.weight, .weight_qscale, .weight_qbias
///   _managed_collision_collection.*
class ManagedCollisionEmbeddingBagCollectionImpl : public torch::nn::Module {
 public:
  ManagedCollisionEmbeddingBagCollectionImpl(std::shared_ptr<EmbeddingBagCollectionImpl> ebc,
                                             ManagedCollisionCollection managed_collision_collection,
                                             bool return_remapped_features = false);
  static std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl> from_float(
      recmod::ManagedCollisionEmbeddingBagCollectionImpl& module, const QuantConfig& config);
  static std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl> uninitialized_like(
      recmod::ManagedCollisionEmbeddingBagCollectionImpl& module, std::vector<EmbeddingBagConfig> tables);

  std::pair<KeyedTensor, std::optional<KeyedJaggedTensor>> forward(const KeyedJaggedTensor& features);
  void train(bool on = true) override;

  EmbeddingBagCollectionImpl& embedding_bag_collection() { return *ebc_; }
  const EmbeddingBagCollectionImpl& embedding_bag_collection() const { return *ebc_; }
  ManagedCollisionCollection& managed_collision_collection() { return mcc_; }

  void load_quantized_state_dict(StateDict state, const std::string& origin);

 private:
  std::shared_ptr<EmbeddingBagCollectionImpl> ebc_;
  ManagedCollisionCollection mcc_;
  bool return_remapped_features_;
};
TORCH_MODULE(ManagedCollisionEmbeddingBagCollection);

}  // namespace recmod::quant
