#include "recmod/modules/embedding_tower.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {

TowerEmbeddingModule tower_embedding(std::shared_ptr<EmbeddingBagCollectionInterface> ebc) {
  if (!ebc) throw_input_error("EmbeddingTower: no embedding module given");
  const bool weighted = ebc->is_weighted();
  return {ebc, [ebc](const KeyedJaggedTensor& f) -> EmbeddingOutput { return ebc->forward(f); }, weighted};
}

TowerEmbeddingModule tower_embedding(std::shared_ptr<EmbeddingCollectionInterface> ec) {
  if (!ec) throw_input_error("EmbeddingTower: no embedding module given");
  return {ec, [ec](const KeyedJaggedTensor& f) -> EmbeddingOutput { return ec->forward(f); }, false};
}

TowerEmbeddingModule tower_embedding(EmbeddingBagCollection ebc) {
  return tower_embedding(std::shared_ptr<EmbeddingBagCollectionInterface>(ebc.ptr()));
}

TowerEmbeddingModule tower_embedding(EmbeddingCollection ec) {
  return tower_embedding(std::shared_ptr<EmbeddingCollectionInterface>(ec.ptr()));
}

TowerEmbeddingModule tower_embedding(FeatureProcessedEmbeddingBagCollection fp_ebc) {
  auto impl = fp_ebc.ptr();
  return {impl, [impl](const KeyedJaggedTensor& f) -> EmbeddingOutput { return impl->forward(f); }, false};
}

void throw_interaction_input_mismatch(bool pooled) {
  throw_input_error("EmbeddingTower: the interaction module does not take ",
                    pooled ? "a KeyedTensor (pooled embeddings)" : "a Dict[str, JaggedTensor] (sequence embeddings)",
                    ", which the embedding module produces");
}

EmbeddingTowerImpl::EmbeddingTowerImpl(TowerEmbeddingModule embedding, TowerInteractionModule interaction)
    : embedding_(std::move(embedding)), interaction_(std::move(interaction)) {
  if (!embedding_.module || !embedding_.forward) throw_input_error("EmbeddingTower: no embedding module given");
  if (!interaction_.module || !interaction_.forward) throw_input_error("EmbeddingTower: no interaction module given");
  register_module("embedding", embedding_.module);
  register_module("interaction", interaction_.module);
}

torch::Tensor EmbeddingTowerImpl::forward(const KeyedJaggedTensor& features) {
  return interaction_.forward(embedding_.forward(features));
}

EmbeddingTowerCollectionImpl::EmbeddingTowerCollectionImpl(std::vector<EmbeddingTower> towers)
    : towers_(std::move(towers)) {
  torch::nn::ModuleList list;
  for (const auto& t : towers_) list->push_back(t.ptr());
  register_module("towers", list);
}

torch::Tensor EmbeddingTowerCollectionImpl::forward(const std::optional<KeyedJaggedTensor>& features,
                                                    const std::optional<KeyedJaggedTensor>& weighted_features) {
  std::vector<torch::Tensor> outputs;
  for (size_t i = 0; i < towers_.size(); ++i) {
    const bool weighted = towers_[i]->embedding().takes_weighted_features;
    const auto& input = weighted ? weighted_features : features;
    if (!input)
      throw_input_error("EmbeddingTowerCollection: tower ", i, " takes ",
                        weighted ? "weighted_features" : "features", " but none were given");
    outputs.push_back(towers_[i]->forward(*input));
  }
  return torch::cat(outputs, 1);
}

}  // namespace recmod
