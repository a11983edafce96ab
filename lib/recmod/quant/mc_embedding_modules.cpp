#include "recmod/quant/mc_embedding_modules.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/quant/fp_embedding_modules.h"  // take_prefixed

namespace recmod::quant {

namespace {

constexpr char kMcc[] = "_managed_collision_collection";

/// The quantized module's tables go to its loader, the MCC's keys to the MCC.
template <typename Quant>
void load_tables_and_mcc(Quant& tables, ManagedCollisionCollection& mcc, StateDict state, const std::string& origin) {
  StateDict managed = take_prefixed(state, kMcc);
  tables.load_quantized_state_dict(std::move(state), origin);
  recmod::load_state_dict(*mcc, managed, origin + " (" + kMcc + ")");
}

}  // namespace

ManagedCollisionEmbeddingCollectionImpl::ManagedCollisionEmbeddingCollectionImpl(
    std::shared_ptr<EmbeddingCollectionImpl> ec, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features)
    : ec_(std::move(ec)),
      mcc_(std::move(managed_collision_collection)),
      return_remapped_features_(return_remapped_features) {
  if (!ec_ || !mcc_) throw_input_error("quantized ManagedCollisionEmbeddingCollection: a module is missing");
  // The quantized EC's tables at this module's top level, as TorchRec's subclass has them.
  register_module("embeddings", ec_->named_children()["embeddings"]);
  register_module(kMcc, mcc_);
}

std::shared_ptr<ManagedCollisionEmbeddingCollectionImpl> ManagedCollisionEmbeddingCollectionImpl::from_float(
    recmod::ManagedCollisionEmbeddingCollectionImpl& module, const QuantConfig& config) {
  return std::make_shared<ManagedCollisionEmbeddingCollectionImpl>(
      EmbeddingCollectionImpl::from_float(*module.embedding_collection(), config),
      module.managed_collision_collection(), module.return_remapped_features());
}

std::shared_ptr<ManagedCollisionEmbeddingCollectionImpl> ManagedCollisionEmbeddingCollectionImpl::uninitialized_like(
    recmod::ManagedCollisionEmbeddingCollectionImpl& module, std::vector<EmbeddingConfig> tables) {
  auto ec = std::make_shared<EmbeddingCollectionImpl>(EmbeddingCollectionOptions(std::move(tables))
                                                          .need_indices(module.embedding_collection()->need_indices())
                                                          .uninitialized(true));
  return std::make_shared<ManagedCollisionEmbeddingCollectionImpl>(ec, module.managed_collision_collection(),
                                                                   module.return_remapped_features());
}

std::pair<JaggedTensorDict, std::optional<KeyedJaggedTensor>> ManagedCollisionEmbeddingCollectionImpl::forward(
    const KeyedJaggedTensor& features) {
  KeyedJaggedTensor remapped = mcc_->forward(features);
  JaggedTensorDict out = ec_->forward(remapped);
  if (!return_remapped_features_) return {std::move(out), std::nullopt};
  return {std::move(out), std::move(remapped)};
}

void ManagedCollisionEmbeddingCollectionImpl::train(bool on) {
  torch::nn::Module::train(on);
  ec_->train(on);
}

void ManagedCollisionEmbeddingCollectionImpl::load_quantized_state_dict(StateDict state, const std::string& origin) {
  load_tables_and_mcc(*ec_, mcc_, std::move(state), origin);
}

ManagedCollisionEmbeddingBagCollectionImpl::ManagedCollisionEmbeddingBagCollectionImpl(
    std::shared_ptr<EmbeddingBagCollectionImpl> ebc, ManagedCollisionCollection managed_collision_collection,
    bool return_remapped_features)
    : ebc_(std::move(ebc)),
      mcc_(std::move(managed_collision_collection)),
      return_remapped_features_(return_remapped_features) {
  if (!ebc_ || !mcc_) throw_input_error("quantized ManagedCollisionEmbeddingBagCollection: a module is missing");
  register_module("embedding_bags", ebc_->named_children()["embedding_bags"]);
  register_module(kMcc, mcc_);
}

std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl> ManagedCollisionEmbeddingBagCollectionImpl::from_float(
    recmod::ManagedCollisionEmbeddingBagCollectionImpl& module, const QuantConfig& config) {
  return std::make_shared<ManagedCollisionEmbeddingBagCollectionImpl>(
      EmbeddingBagCollectionImpl::from_float(*module.embedding_bag_collection(), config),
      module.managed_collision_collection(), module.return_remapped_features());
}

std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl>
ManagedCollisionEmbeddingBagCollectionImpl::uninitialized_like(
    recmod::ManagedCollisionEmbeddingBagCollectionImpl& module, std::vector<EmbeddingBagConfig> tables) {
  EmbeddingBagCollectionOptions options(std::move(tables));
  options.is_weighted(module.embedding_bag_collection()->is_weighted()).uninitialized(true);
  return std::make_shared<ManagedCollisionEmbeddingBagCollectionImpl>(
      std::make_shared<EmbeddingBagCollectionImpl>(options), module.managed_collision_collection(),
      module.return_remapped_features());
}

std::pair<KeyedTensor, std::optional<KeyedJaggedTensor>> ManagedCollisionEmbeddingBagCollectionImpl::forward(
    const KeyedJaggedTensor& features) {
  KeyedJaggedTensor remapped = mcc_->forward(features);
  KeyedTensor out = ebc_->forward(remapped);
  if (!return_remapped_features_) return {std::move(out), std::nullopt};
  return {std::move(out), std::move(remapped)};
}

void ManagedCollisionEmbeddingBagCollectionImpl::train(bool on) {
  torch::nn::Module::train(on);
  ebc_->train(on);
}

void ManagedCollisionEmbeddingBagCollectionImpl::load_quantized_state_dict(StateDict state, const std::string& origin) {
  load_tables_and_mcc(*ebc_, mcc_, std::move(state), origin);
}

}  // namespace recmod::quant
