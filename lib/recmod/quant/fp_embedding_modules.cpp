#include "recmod/quant/fp_embedding_modules.h"

#include <torch/nn/modules/container/moduledict.h>
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::quant {

namespace {

void check_weighted(const std::shared_ptr<EmbeddingBagCollectionImpl>& ebc) {
  if (!ebc) throw_input_error("quantized FeatureProcessedEmbeddingBagCollection: no EmbeddingBagCollection given");
  if (!ebc->is_weighted())
    throw_input_error(
        "quantized FeatureProcessedEmbeddingBagCollection: the EmbeddingBagCollection must be weighted "
        "to take the feature processors' weights");
}

std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl> with_processors_of(
    recmod::FeatureProcessedEmbeddingBagCollectionImpl& module, std::shared_ptr<EmbeddingBagCollectionImpl> ebc) {
  if (module.feature_processor_collection())
    return std::make_shared<FeatureProcessedEmbeddingBagCollectionImpl>(std::move(ebc),
                                                                        module.feature_processor_collection());
  return std::make_shared<FeatureProcessedEmbeddingBagCollectionImpl>(std::move(ebc), module.feature_processor_dict());
}

}  // namespace

StateDict take_prefixed(StateDict& state, const std::string& prefix) {
  const std::string dotted = prefix + ".";
  StateDict taken, rest;
  for (auto& [key, value] : state) {
    if (key.rfind(dotted, 0) == 0)
      taken.emplace_back(key.substr(dotted.size()), std::move(value));
    else
      rest.emplace_back(key, std::move(value));
  }
  state = std::move(rest);
  return taken;
}

FeatureProcessedEmbeddingBagCollectionImpl::FeatureProcessedEmbeddingBagCollectionImpl(
    std::shared_ptr<EmbeddingBagCollectionImpl> ebc, FeatureProcessorDict feature_processors)
    : ebc_(std::move(ebc)), processor_dict_(std::move(feature_processors)) {
  check_weighted(ebc_);
  // The quantized EBC's tables at this module's top level, as TorchRec's subclass has them.
  register_module("embedding_bags", ebc_->named_children()["embedding_bags"]);
  torch::nn::ModuleDict dict;
  for (const auto& [feature, processor] : processor_dict_) dict->update({{feature, processor.ptr()}});
  processors_ = dict.ptr();
  register_module("feature_processor", processors_);
}

FeatureProcessedEmbeddingBagCollectionImpl::FeatureProcessedEmbeddingBagCollectionImpl(
    std::shared_ptr<EmbeddingBagCollectionImpl> ebc, PositionWeightedModuleCollection feature_processors)
    : ebc_(std::move(ebc)), processor_collection_(std::move(feature_processors)) {
  check_weighted(ebc_);
  register_module("embedding_bags", ebc_->named_children()["embedding_bags"]);
  processors_ = processor_collection_.ptr();
  register_module("feature_processor", processors_);
}

std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl> FeatureProcessedEmbeddingBagCollectionImpl::from_float(
    recmod::FeatureProcessedEmbeddingBagCollectionImpl& module, const QuantConfig& config) {
  return with_processors_of(module, EmbeddingBagCollectionImpl::from_float(*module.embedding_bag_collection(), config));
}

std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl>
FeatureProcessedEmbeddingBagCollectionImpl::uninitialized_like(
    recmod::FeatureProcessedEmbeddingBagCollectionImpl& module, std::vector<EmbeddingBagConfig> tables) {
  EmbeddingBagCollectionOptions options(std::move(tables));
  options.is_weighted(true).uninitialized(true);
  return with_processors_of(module, std::make_shared<EmbeddingBagCollectionImpl>(options));
}

KeyedTensor FeatureProcessedEmbeddingBagCollectionImpl::forward(const KeyedJaggedTensor& features) {
  const KeyedJaggedTensor weighted = processor_collection_ ? processor_collection_->forward(features)
                                                           : apply_feature_processors_to_kjt(features, processor_dict_);
  return ebc_->forward(weighted);
}

void FeatureProcessedEmbeddingBagCollectionImpl::train(bool on) {
  torch::nn::Module::train(on);
  ebc_->train(on);
}

void FeatureProcessedEmbeddingBagCollectionImpl::load_quantized_state_dict(StateDict state, const std::string& origin) {
  StateDict processors = take_prefixed(state, "feature_processor");
  StateDict tables;
  for (auto& [key, value] : state) tables.emplace_back(key, std::move(value));  // embedding_bags.* and strays
  ebc_->load_quantized_state_dict(std::move(tables), origin);
  recmod::load_state_dict(*processors_, processors, origin + " (feature_processor)");
}

}  // namespace recmod::quant
