#pragma once
// Position-weighted feature processors (TorchRec v0.6):
//   PositionWeightedModule, PositionWeightedModuleCollection
//     (torchrec.modules.feature_processor_), and the older
//   PositionWeightedProcessor (torchrec.modules.feature_processor).
// Each gives id i of a bag the weight p_f[pos(i)], pos(i) = the position of i
// within its bag (0, 1, ...), with one learnable vector p_f per feature,
// initialised to ones. A bag longer than p_f is an InputError.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/parameterdict.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <utility>
#include <string>
#include <vector>

#include "recmod/modules/embedding_modules.h"
#include "recmod/sparse/jagged_tensor.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod {

/// Feature name -> max_feature_length, in the caller's order (the order of
/// the parameters, as with TorchRec's dict).
using FeatureLengths = std::vector<std::pair<std::string, int64_t>>;

/// Position of every value within its bag: for offsets [0, 2, 2, 5] gives
/// [0, 1, 0, 1, 2] (fbgemm's offsets_range). `num_values` = offsets.back().
torch::Tensor offsets_range(const torch::Tensor& offsets, int64_t num_values);

/// position_weight[positions], checking that no position reaches
/// position_weight.size(0) (message names `feature` and the limit).
torch::Tensor gather_position_weights(const torch::Tensor& position_weight, const torch::Tensor& positions,
                                      const std::string& what);

/// TorchRec's BaseFeatureProcessor: Dict[str, JaggedTensor] in and out.
class BaseFeatureProcessor : public torch::nn::Module {
 public:
  virtual JaggedTensorDict forward(const JaggedTensorDict& features) = 0;
};

/// TorchRec's BaseGroupedFeatureProcessor: KeyedJaggedTensor in and out.
class BaseGroupedFeatureProcessor : public torch::nn::Module {
 public:
  virtual KeyedJaggedTensor forward(const KeyedJaggedTensor& features) = 0;
};

/// TorchRec's position_weighted_module_update_features: `features` with each
/// key of `weighted_features` replaced by its weighted version (a key not in
/// `features` is added at the end); the order of `features` is kept.
JaggedTensorDict position_weighted_module_update_features(JaggedTensorDict features,
                                                          const JaggedTensorDict& weighted_features);

/// Two signatures, as TorchRec has had both:
/// - one feature (feature_processor_'s): JaggedTensor in, the same
///   values/lengths with weights = position_weight[position within bag] out
///   (input weights are replaced). Parameter: position_weight (max_feature_length).
/// - the reference's (feature_processor's, v0.6): max_feature_lengths per
///   feature; Dict[str, JaggedTensor] in, the same dict out with each of
///   those features weighted by its position_weights.<feature> (others pass
///   through; position_weighted_module_update_features). Parameters:
///   position_weights.<feature>.
class PositionWeightedModuleImpl : public BaseFeatureProcessor {
 public:
  explicit PositionWeightedModuleImpl(int64_t max_feature_length, torch::Device device = torch::kCPU);
  explicit PositionWeightedModuleImpl(FeatureLengths max_feature_lengths, torch::Device device = torch::kCPU);
  JaggedTensor forward(const JaggedTensor& features);
  JaggedTensorDict forward(const JaggedTensorDict& features) override;
  void reset_parameters();
  /// The one feature's length (the single-feature form).
  int64_t max_feature_length() const;
  /// The per-feature lengths (the reference's form); empty for the single-feature form.
  const FeatureLengths& max_feature_lengths() const { return max_feature_lengths_; }
  torch::Tensor position_weight;  // the single-feature form's parameter

 private:
  FeatureLengths max_feature_lengths_;
  torch::nn::ParameterDict position_weights_{nullptr};
};
TORCH_MODULE(PositionWeightedModule);

/// Several features of a KJT: keys, values and lengths are kept; weights
/// become position weights for the features in max_feature_lengths and 1
/// for the others. Parameters: position_weights.<feature>.
class PositionWeightedModuleCollectionImpl : public BaseGroupedFeatureProcessor {
 public:
  explicit PositionWeightedModuleCollectionImpl(FeatureLengths max_feature_lengths,
                                                torch::Device device = torch::kCPU);
  KeyedJaggedTensor forward(const KeyedJaggedTensor& features) override;
  void reset_parameters();
  const FeatureLengths& max_feature_lengths() const { return max_feature_lengths_; }
  /// nullptr when `feature` has no position weights.
  const torch::Tensor* find_position_weight(const std::string& feature) const;
  /// The parameter position_weights.<feature>; throws InputError when absent.
  torch::Tensor& position_weight(const std::string& feature);

 private:
  FeatureLengths max_feature_lengths_;
  torch::nn::ParameterDict position_weights_{nullptr};
};
TORCH_MODULE(PositionWeightedModuleCollection);

/// TorchRec's older grouped processor. When the input has both features
/// with and without position weights, the output keeps only those with
/// (in input order); when it has only features with position weights,
/// all are kept; when it has none, the input is returned unchanged.
/// Input weights are ignored (TorchRec reads them as precomputed positions,
/// a detail of its row-wise sharding that recmod does not have).
/// Parameters: position_weights.<feature>.
class PositionWeightedProcessorImpl : public BaseGroupedFeatureProcessor {
 public:
  explicit PositionWeightedProcessorImpl(FeatureLengths max_feature_lengths,
                                         torch::Device device = torch::kCPU);
  KeyedJaggedTensor forward(const KeyedJaggedTensor& features) override;
  const FeatureLengths& max_feature_lengths() const { return max_feature_lengths_; }
  /// nullptr when `feature` has no position weights.
  const torch::Tensor* find_position_weight(const std::string& feature) const;
  /// The parameter position_weights.<feature>; throws InputError when absent.
  torch::Tensor& position_weight(const std::string& feature);

 private:
  FeatureLengths max_feature_lengths_;
  torch::nn::ParameterDict position_weights_{nullptr};
};
TORCH_MODULE(PositionWeightedProcessor);

}  // namespace recmod
