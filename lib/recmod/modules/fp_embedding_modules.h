#pragma once
// FeatureProcessedEmbeddingBagCollection, as
// torchrec.modules.fp_embedding_modules (v0.6): feature processors turn the
// input KJT into a weighted one, which a weighted EmbeddingBagCollection pools.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <utility>
#include <vector>

#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/feature_processor.h"

namespace recmod {

/// Per-feature processors (TorchRec's Dict[str, FeatureProcessor]), in order.
using FeatureProcessorDict = std::vector<std::pair<std::string, PositionWeightedModule>>;

/// TorchRec's apply_feature_processors_to_kjt: every key of `features` gets
/// weights: its processor's, or 1 for keys without a processor.
KeyedJaggedTensor apply_feature_processors_to_kjt(const KeyedJaggedTensor& features,
                                                  const FeatureProcessorDict& processors);

/// out = ebc(fp(features)), where fp gives every key of `features` weights:
/// its processor's weights, or 1 for keys without a processor (dict form),
/// or what the PositionWeightedModuleCollection gives (collection form).
/// The EBC must be weighted. Parameters: _embedding_bag_collection.* and
/// _feature_processors.<feature>.position_weight (dict form) or
/// _feature_processors.position_weights.<feature> (collection form).
class FeatureProcessedEmbeddingBagCollectionImpl : public torch::nn::Module {
 public:
  FeatureProcessedEmbeddingBagCollectionImpl(EmbeddingBagCollection embedding_bag_collection,
                                             FeatureProcessorDict feature_processors);
  FeatureProcessedEmbeddingBagCollectionImpl(EmbeddingBagCollection embedding_bag_collection,
                                             PositionWeightedModuleCollection feature_processors);

  KeyedTensor forward(const KeyedJaggedTensor& features);
  /// The processed (weighted) KJT the EBC receives.
  KeyedJaggedTensor process(const KeyedJaggedTensor& features);

  EmbeddingBagCollection& embedding_bag_collection() { return ebc_; }
  /// The processors: the dict form's (empty in the collection form), or the
  /// collection form's module (null in the dict form).
  const FeatureProcessorDict& feature_processor_dict() const { return processor_dict_; }
  const PositionWeightedModuleCollection& feature_processor_collection() const { return processor_collection_; }
  const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const { return ebc_->embedding_bag_configs(); }

 private:
  void check_ebc() const;
  EmbeddingBagCollection ebc_;
  FeatureProcessorDict processor_dict_;
  PositionWeightedModuleCollection processor_collection_{nullptr};
};
TORCH_MODULE(FeatureProcessedEmbeddingBagCollection);

}  // namespace recmod
