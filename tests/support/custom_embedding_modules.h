#pragma once
// Custom embedding modules for the tests: implementations of
// EmbeddingBagCollectionInterface / EmbeddingCollectionInterface that are
// not recmod's collections, as a user would write them.
#include <torch/nn/cloneable.h>
#include <torch/torch.h>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "recmod/modules/embedding_interfaces.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::test {

namespace detail {
template <typename Base, typename Derived, typename = void>
struct can_static_downcast : std::false_type {};
template <typename Base, typename Derived>
struct can_static_downcast<Base, Derived, std::void_t<decltype(static_cast<Derived*>(std::declval<Base*>()))>>
    : std::true_type {};
struct CloneableProbe : torch::nn::Cloneable<CloneableProbe> {
  void reset() override {}
};
struct NotCloneable {};
}  // namespace detail

/// Whether libtorch's Cloneable derives from Module virtually (before
/// PyTorch 2.2), so that a module can be both an interface and Cloneable:
/// a static_cast down from a virtual base is ill-formed.
inline constexpr bool kCloneableSharesModule =
    !detail::can_static_downcast<torch::nn::Module, detail::CloneableProbe>::value;

/// Each bag pooled by max over its rows (an empty bag gives zeros), one
/// table per config, parameters weight_<table> (N, D). Also Cloneable, as
/// the C++ frontend's user modules are, where libtorch's Cloneable shares
/// the interface's virtual Module base (kCloneableSharesModule).
class MaxPooledEmbeddingBagCollectionImpl
    : public EmbeddingBagCollectionInterface,
      public std::conditional_t<kCloneableSharesModule, torch::nn::Cloneable<MaxPooledEmbeddingBagCollectionImpl>,
                                detail::NotCloneable> {
 public:
  explicit MaxPooledEmbeddingBagCollectionImpl(std::vector<EmbeddingBagConfig> tables) : tables_(std::move(tables)) {
    for (auto& t : tables_)
      if (t.feature_names.empty()) t.feature_names = {t.name};
    reset();
  }
  void reset() {  // Cloneable's reset where it is a base
    weights_.clear();
    for (const auto& t : tables_)
      weights_.push_back(register_parameter("weight_" + t.name, torch::randn({t.num_embeddings, t.embedding_dim})));
  }
  KeyedTensor forward(const KeyedJaggedTensor& features) override {
    std::vector<std::string> keys;
    std::vector<torch::Tensor> pooled;
    const auto names = get_embedding_names_by_table(tables_);
    for (size_t t = 0; t < tables_.size(); ++t)
      for (size_t j = 0; j < tables_[t].feature_names.size(); ++j) {
        const JaggedTensor jt = features[tables_[t].feature_names[j]];
        std::vector<torch::Tensor> rows;
        for (const auto& ids : jt.to_dense())
          rows.push_back(ids.numel() == 0 ? torch::zeros({tables_[t].embedding_dim})
                                          : std::get<0>(weights_[t].index_select(0, ids.to(torch::kLong)).max(0)));
        keys.push_back(names[t][j]);
        pooled.push_back(torch::stack(rows));
      }
    return KeyedTensor::from_tensor_list(keys, pooled);
  }
  const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const override { return tables_; }
  bool is_weighted() const override { return false; }
  const torch::Tensor& weight(size_t table) const { return weights_.at(table); }

 private:
  std::vector<EmbeddingBagConfig> tables_;
  std::vector<torch::Tensor> weights_;
};
TORCH_MODULE(MaxPooledEmbeddingBagCollection);

/// An EmbeddingBagCollection (submodule `ebc`) whose output is multiplied by `scale`.
class ScaledEmbeddingBagCollectionImpl : public EmbeddingBagCollectionInterface {
 public:
  ScaledEmbeddingBagCollectionImpl(EmbeddingBagCollection ebc, double scale)
      : ebc_(register_module("ebc", std::move(ebc))), scale_(scale) {}
  KeyedTensor forward(const KeyedJaggedTensor& features) override {
    KeyedTensor kt = ebc_->forward(features);
    return KeyedTensor(kt.keys(), kt.length_per_key(), kt.values() * scale_);
  }
  const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const override {
    return ebc_->embedding_bag_configs();
  }
  bool is_weighted() const override { return ebc_->is_weighted(); }
  EmbeddingBagCollection& ebc() { return ebc_; }

 private:
  EmbeddingBagCollection ebc_;
  double scale_;
};
TORCH_MODULE(ScaledEmbeddingBagCollection);

/// An EmbeddingCollection (submodule `ec`) whose values are multiplied by `scale`.
class ScaledEmbeddingCollectionImpl : public EmbeddingCollectionInterface {
 public:
  ScaledEmbeddingCollectionImpl(EmbeddingCollection ec, double scale)
      : ec_(register_module("ec", std::move(ec))), scale_(scale) {}
  JaggedTensorDict forward(const KeyedJaggedTensor& features) override {
    JaggedTensorDict out;
    for (auto& [key, jt] : ec_->forward(features))
      out.emplace_back(key, JaggedTensor::from_lengths(jt.values() * scale_, jt.lengths(), jt.weights_or_none()));
    return out;
  }
  const std::vector<EmbeddingConfig>& embedding_configs() const override { return ec_->embedding_configs(); }
  bool need_indices() const override { return ec_->need_indices(); }
  int64_t embedding_dim() const override { return ec_->embedding_dim(); }
  const std::vector<std::vector<std::string>>& embedding_names_by_table() const override {
    return ec_->embedding_names_by_table();
  }
  EmbeddingCollection& ec() { return ec_; }

 private:
  EmbeddingCollection ec_;
  double scale_;
};
TORCH_MODULE(ScaledEmbeddingCollection);

}  // namespace recmod::test
