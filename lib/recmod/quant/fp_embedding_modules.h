#pragma once
// The quantized FeatureProcessedEmbeddingBagCollection, as TorchRec's
// torchrec.quant.embedding_modules.FeatureProcessedEmbeddingBagCollection
// (QuantFeatureProcessedEmbeddingBagCollection): the float module's feature
// processors weight the input, a quantized weighted EmbeddingBagCollection
// pools it. Inference only.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>

#include "recmod/common/state_dict.h"
#include "recmod/modules/fp_embedding_modules.h"
#include "recmod/quant/embedding_modules.h"
#include "recmod/quant/quant_config.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod::quant {

/// out = ebc(fp(features)) with `ebc` a quantized (weighted) collection;
/// fp as in recmod::FeatureProcessedEmbeddingBagCollection (dict or
/// collection form). state_dict, TorchRec's (its quantized EBC is the base
/// class, its processors the attribute `feature_processor`):
///   embedding_bags.<t>.weight, .weight_qscale, .weight_qbias  (quantized EBC's layout)
///   feature_processor.<feature>.position_weight               (dict form)
///   feature_processor.position_weights.<feature>              (collection form)
class FeatureProcessedEmbeddingBagCollectionImpl : public torch::nn::Module {
 public:
  /// InputError when `ebc` is not weighted.
  FeatureProcessedEmbeddingBagCollectionImpl(std::shared_ptr<EmbeddingBagCollectionImpl> ebc,
                                             FeatureProcessorDict feature_processors);
  FeatureProcessedEmbeddingBagCollectionImpl(std::shared_ptr<EmbeddingBagCollectionImpl> ebc,
                                             PositionWeightedModuleCollection feature_processors);

  /// TorchRec's from_float: the float module's tables quantized as
  /// EmbeddingBagCollectionImpl::from_float does, its processors shared.
  static std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl> from_float(
      recmod::FeatureProcessedEmbeddingBagCollectionImpl& module, const QuantConfig& config);
  /// The same shape as `module` with tables of `tables`' types (e.g. from a
  /// checkpoint), unwritten: load_quantized_state_dict fills them.
  static std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl> uninitialized_like(
      recmod::FeatureProcessedEmbeddingBagCollectionImpl& module, std::vector<EmbeddingBagConfig> tables);

  KeyedTensor forward(const KeyedJaggedTensor& features);
  /// Also sets the quantized EBC's mode (its tables are registered here, not the module).
  void train(bool on = true) override;

  EmbeddingBagCollectionImpl& embedding_bag_collection() { return *ebc_; }
  const EmbeddingBagCollectionImpl& embedding_bag_collection() const { return *ebc_; }

  /// The tables as the quantized EBC loads them (table-named
  /// CheckpointErrors), the processors strictly; keys relative to this module.
  void load_quantized_state_dict(StateDict state, const std::string& origin);

 private:
  std::shared_ptr<EmbeddingBagCollectionImpl> ebc_;
  FeatureProcessorDict processor_dict_;
  PositionWeightedModuleCollection processor_collection_{nullptr};
  std::shared_ptr<torch::nn::Module> processors_;  // registered as feature_processor
};
TORCH_MODULE(FeatureProcessedEmbeddingBagCollection);

/// Splits `state` (moved from) into the keys under "`prefix`." (returned,
/// prefix removed) and the rest (left in `state`).
StateDict take_prefixed(StateDict& state, const std::string& prefix);

}  // namespace recmod::quant
