#pragma once
// EmbeddingTower and EmbeddingTowerCollection, as
// torchrec.modules.embedding_tower (v0.6): an embedding module whose output
// goes straight into an interaction module.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "recmod/modules/embedding_interfaces.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fp_embedding_modules.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod {

/// What an embedding module produces: pooled (KeyedTensor, EBC and
/// FP-EBC) or sequence embeddings (Dict[str, JaggedTensor], EC).
using EmbeddingOutput = std::variant<KeyedTensor, JaggedTensorDict>;

/// A tower's embedding module, type-erased: the module (for parameters and
/// train/eval), its forward, and which of a collection's inputs it takes
/// (TorchRec's tower_input_params: EC -> features; EBC -> weighted_features
/// when is_weighted, else features).
struct TowerEmbeddingModule {
  std::shared_ptr<torch::nn::Module> module;
  std::function<EmbeddingOutput(const KeyedJaggedTensor&)> forward;
  bool takes_weighted_features = false;
};
TowerEmbeddingModule tower_embedding(EmbeddingBagCollection ebc);
TowerEmbeddingModule tower_embedding(EmbeddingCollection ec);
/// Any implementation of the interfaces (a custom embedding module, the
/// quantized collections): an EBC takes weighted_features when is_weighted().
TowerEmbeddingModule tower_embedding(std::shared_ptr<EmbeddingBagCollectionInterface> ebc);
TowerEmbeddingModule tower_embedding(std::shared_ptr<EmbeddingCollectionInterface> ec);
/// An FP-EBC adds the weights itself, so it takes the plain `features`.
TowerEmbeddingModule tower_embedding(FeatureProcessedEmbeddingBagCollection fp_ebc);

/// A tower's interaction module, type-erased: any module holder whose
/// forward takes a KeyedTensor or a Dict[str, JaggedTensor] (whichever the
/// embedding module gives) and returns a (B, N) tensor.
struct TowerInteractionModule {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const EmbeddingOutput&)> forward;
};

/// Throws InputError: the interaction module cannot take the embedding
/// module's output (`pooled`: a KeyedTensor, else a Dict[str, JaggedTensor]).
[[noreturn]] void throw_interaction_input_mismatch(bool pooled);

namespace detail {
template <typename Impl, typename Input, typename = void>
struct forward_takes : std::false_type {};
template <typename Impl, typename Input>
struct forward_takes<Impl, Input, std::void_t<decltype(std::declval<Impl&>().forward(std::declval<const Input&>()))>>
    : std::true_type {};
}  // namespace detail

template <typename Holder>
TowerInteractionModule tower_interaction(Holder holder) {
  auto impl = holder.ptr();
  using Impl = typename Holder::ContainedType;
  return {impl, [impl](const EmbeddingOutput& embeddings) -> torch::Tensor {
            return std::visit(
                [&](const auto& e) -> torch::Tensor {
                  using E = std::decay_t<decltype(e)>;
                  if constexpr (detail::forward_takes<Impl, E>::value) {
                    return impl->forward(e);
                  } else {
                    throw_interaction_input_mismatch(std::is_same_v<E, KeyedTensor>);
                  }
                },
                embeddings);
          }};
}


/// out = interaction(embedding(features)), (B, N). Parameters:
/// embedding.*, interaction.*.
class EmbeddingTowerImpl : public torch::nn::Module {
 public:
  EmbeddingTowerImpl(TowerEmbeddingModule embedding, TowerInteractionModule interaction);
  torch::Tensor forward(const KeyedJaggedTensor& features);
  const TowerEmbeddingModule& embedding() const { return embedding_; }

 private:
  TowerEmbeddingModule embedding_;
  TowerInteractionModule interaction_;
};
TORCH_MODULE(EmbeddingTower);

/// Runs each tower on `features` or `weighted_features` (as its embedding
/// module takes them) and concatenates the outputs along dim 1: (B, sum N_i).
/// Parameters: towers.<i>.*.
class EmbeddingTowerCollectionImpl : public torch::nn::Module {
 public:
  explicit EmbeddingTowerCollectionImpl(std::vector<EmbeddingTower> towers);
  /// Throws InputError when a tower's input is absent.
  torch::Tensor forward(const std::optional<KeyedJaggedTensor>& features,
                        const std::optional<KeyedJaggedTensor>& weighted_features = std::nullopt);
  size_t size() const { return towers_.size(); }

 private:
  std::vector<EmbeddingTower> towers_;
};
TORCH_MODULE(EmbeddingTowerCollection);

}  // namespace recmod
