#include "recmod/modules/fp_embedding_modules.h"

#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod {

FeatureProcessedEmbeddingBagCollectionImpl::FeatureProcessedEmbeddingBagCollectionImpl(
    EmbeddingBagCollection embedding_bag_collection, FeatureProcessorDict feature_processors)
    : ebc_(std::move(embedding_bag_collection)), processor_dict_(std::move(feature_processors)) {
  check_ebc();
  register_module("_embedding_bag_collection", ebc_);
  torch::nn::ModuleDict dict;
  for (const auto& [feature, processor] : processor_dict_) dict->update({{feature, processor.ptr()}});
  register_module("_feature_processors", dict);
}

FeatureProcessedEmbeddingBagCollectionImpl::FeatureProcessedEmbeddingBagCollectionImpl(
    EmbeddingBagCollection embedding_bag_collection, PositionWeightedModuleCollection feature_processors)
    : ebc_(std::move(embedding_bag_collection)), processor_collection_(std::move(feature_processors)) {
  check_ebc();
  register_module("_embedding_bag_collection", ebc_);
  register_module("_feature_processors", processor_collection_);
}

void FeatureProcessedEmbeddingBagCollectionImpl::check_ebc() const {
  if (!ebc_) throw_input_error("FeatureProcessedEmbeddingBagCollection: no EmbeddingBagCollection given");
  if (!ebc_->is_weighted())
    throw_input_error(
        "FeatureProcessedEmbeddingBagCollection: the EmbeddingBagCollection must be weighted (is_weighted=true) "
        "to take the feature processors' weights");
}

KeyedJaggedTensor apply_feature_processors_to_kjt(const KeyedJaggedTensor& features,
                                                  const FeatureProcessorDict& processors) {
  if (features.keys().empty()) return features;
  const int64_t b = features.stride();
  const auto& opk = features.offset_per_key();
  std::vector<torch::Tensor> weights;
  for (size_t k = 0; k < features.keys().size(); ++k) {
    const auto& key = features.keys()[k];
    const int64_t n = opk[k + 1] - opk[k];
    auto it = std::find_if(processors.begin(), processors.end(), [&](const auto& kv) { return kv.first == key; });
    if (it == processors.end()) {
      weights.push_back(torch::ones({n}, torch::TensorOptions().device(features.device())));
      continue;
    }
    const auto lengths = features.lengths().slice(0, static_cast<int64_t>(k) * b, static_cast<int64_t>(k + 1) * b);
    const auto jt = JaggedTensor::unchecked(features.values().slice(0, opk[k], opk[k + 1]), lengths,
                                            offsets_from_lengths(lengths));
    weights.push_back(it->second.ptr()->forward(jt).weights());
  }
  return KeyedJaggedTensor::unchecked(features.keys(), features.values(), features.lengths(), torch::cat(weights),
                                      b);
}

KeyedJaggedTensor FeatureProcessedEmbeddingBagCollectionImpl::process(const KeyedJaggedTensor& features) {
  if (processor_collection_) return processor_collection_->forward(features);
  return apply_feature_processors_to_kjt(features, processor_dict_);
}

KeyedTensor FeatureProcessedEmbeddingBagCollectionImpl::forward(const KeyedJaggedTensor& features) {
  return ebc_->forward(process(features));
}

}  // namespace recmod
