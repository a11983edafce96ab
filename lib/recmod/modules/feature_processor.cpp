#include "recmod/modules/feature_processor.h"

#include <torch/torch.h>

#include <set>

#include "recmod/common/errors.h"

namespace recmod {

torch::Tensor offsets_range(const torch::Tensor& offsets, int64_t num_values) {
  const auto long_offsets = offsets.to(torch::kLong);
  const int64_t num_bags = long_offsets.numel() - 1;
  const auto bag_of_value =
      torch::repeat_interleave(torch::arange(num_bags, long_offsets.options()),
                               long_offsets.slice(0, 1) - long_offsets.slice(0, 0, num_bags), 0, num_values);
  return torch::arange(num_values, long_offsets.options()) - long_offsets.index_select(0, bag_of_value);
}

torch::Tensor gather_position_weights(const torch::Tensor& position_weight, const torch::Tensor& positions,
                                      const std::string& what) {
  const int64_t max_length = position_weight.size(0);
  // A position past the end would be an out-of-range gather (a crash or a
  // device assert); say which feature and limit instead.
  if (positions.numel() > 0 && (positions >= max_length).any().item<bool>())
    throw_input_error(what, ": a bag has ", positions.max().item<int64_t>() + 1,
                      " ids but max_feature_length is ", max_length);
  return position_weight.index_select(0, positions);
}

namespace {

void check_lengths_positive(const FeatureLengths& lengths, const char* module) {
  std::set<std::string> seen;
  for (const auto& [feature, length] : lengths) {
    if (length <= 0)
      throw_input_error(module, ": max_feature_length of feature '", feature, "' must be > 0, got ", length);
    if (!seen.insert(feature).second) throw_input_error(module, ": feature '", feature, "' given twice");
  }
}

torch::nn::ParameterDict make_position_weights(const FeatureLengths& lengths, torch::Device device) {
  torch::nn::ParameterDict dict;
  for (const auto& [feature, length] : lengths)
    dict->insert(feature, torch::ones({length}, torch::TensorOptions().device(device).requires_grad(true)));
  return dict;
}

const torch::Tensor* find_in(const torch::nn::ParameterDict& dict, const std::string& feature) {
  return dict->contains(feature) ? &dict->get(feature) : nullptr;
}

torch::Tensor& get_in(torch::nn::ParameterDict& dict, const std::string& feature, const char* module) {
  if (!dict->contains(feature))
    throw_input_error(module, ": no position weights for feature '", feature, "'; features are ",
                      join_names(dict->keys()));
  return dict->get(feature);
}

/// Per key of `features`, the positions of its values within their bags.
std::vector<torch::Tensor> positions_per_key(const KeyedJaggedTensor& features) {
  const torch::Tensor positions = offsets_range(features.offsets(), features.values().size(0));
  return positions.split_with_sizes(features.length_per_key());
}

std::string feature_what(const char* module, const std::string& feature) {
  return str_cat(module, ": feature '", feature, "'");
}

}  // namespace

// ---------------------------------------------------------------------------

PositionWeightedModuleImpl::PositionWeightedModuleImpl(int64_t max_feature_length, torch::Device device) {
  if (max_feature_length <= 0)
    throw_input_error("PositionWeightedModule: max_feature_length must be > 0, got ", max_feature_length);
  position_weight =
      register_parameter("position_weight", torch::empty({max_feature_length}, torch::TensorOptions().device(device)));
  reset_parameters();
}

PositionWeightedModuleImpl::PositionWeightedModuleImpl(FeatureLengths max_feature_lengths, torch::Device device)
    : max_feature_lengths_(std::move(max_feature_lengths)) {
  check_lengths_positive(max_feature_lengths_, "PositionWeightedModule");
  position_weights_ = register_module("position_weights", make_position_weights(max_feature_lengths_, device));
}

int64_t PositionWeightedModuleImpl::max_feature_length() const {
  if (!position_weight.defined())
    throw_input_error("PositionWeightedModule: built with max_feature_lengths per feature; see max_feature_lengths()");
  return position_weight.size(0);
}

void PositionWeightedModuleImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  if (position_weight.defined()) position_weight.fill_(1.0);
  if (!position_weights_.is_empty())
    for (auto& p : position_weights_->values()) p.fill_(1.0);
}

JaggedTensor PositionWeightedModuleImpl::forward(const JaggedTensor& features) {
  if (!position_weight.defined())
    throw_input_error("PositionWeightedModule: built with max_feature_lengths per feature, it takes a dict of "
                      "JaggedTensors (forward(JaggedTensorDict))");
  const torch::Tensor positions = offsets_range(features.offsets(), features.values().size(0));
  return JaggedTensor::unchecked(features.values(), features.lengths(), features.offsets(),
                                 gather_position_weights(position_weight, positions, "PositionWeightedModule"));
}

JaggedTensorDict PositionWeightedModuleImpl::forward(const JaggedTensorDict& features) {
  if (position_weights_.is_empty())
    throw_input_error("PositionWeightedModule: built for one feature, it takes a JaggedTensor; build it with "
                      "max_feature_lengths per feature for a dict");
  JaggedTensorDict weighted;
  for (const auto& [feature, length] : max_feature_lengths_) {
    const JaggedTensor* jt = nullptr;
    for (const auto& [key, value] : features)
      if (key == feature) jt = &value;
    if (!jt) {
      std::vector<std::string> present;
      for (const auto& kv : features) present.push_back(kv.first);
      throw_input_error("PositionWeightedModule: feature '", feature, "' is missing from the input ",
                        join_names(present));
    }
    const torch::Tensor positions = offsets_range(jt->offsets(), jt->values().size(0));
    weighted.emplace_back(
        feature, JaggedTensor::unchecked(jt->values(), jt->lengths(), jt->offsets(),
                                         gather_position_weights(position_weights_->get(feature), positions,
                                                                 feature_what("PositionWeightedModule", feature))));
  }
  return position_weighted_module_update_features(features, weighted);
}

JaggedTensorDict position_weighted_module_update_features(JaggedTensorDict features,
                                                          const JaggedTensorDict& weighted_features) {
  for (const auto& [key, value] : weighted_features) {
    bool replaced = false;
    for (auto& [k, v] : features)
      if (k == key) {
        v = value;
        replaced = true;
      }
    if (!replaced) features.emplace_back(key, value);
  }
  return features;
}

// ---------------------------------------------------------------------------

PositionWeightedModuleCollectionImpl::PositionWeightedModuleCollectionImpl(FeatureLengths max_feature_lengths,
                                                                           torch::Device device)
    : max_feature_lengths_(std::move(max_feature_lengths)) {
  check_lengths_positive(max_feature_lengths_, "PositionWeightedModuleCollection");
  position_weights_ = register_module("position_weights", make_position_weights(max_feature_lengths_, device));
}

void PositionWeightedModuleCollectionImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : position_weights_->values()) p.fill_(1.0);
}

const torch::Tensor* PositionWeightedModuleCollectionImpl::find_position_weight(const std::string& feature) const {
  return find_in(position_weights_, feature);
}

torch::Tensor& PositionWeightedModuleCollectionImpl::position_weight(const std::string& feature) {
  return get_in(position_weights_, feature, "PositionWeightedModuleCollection");
}

KeyedJaggedTensor PositionWeightedModuleCollectionImpl::forward(const KeyedJaggedTensor& features) {
  if (features.keys().empty()) return features;
  const auto positions = positions_per_key(features);
  std::vector<torch::Tensor> weights;
  for (size_t k = 0; k < features.keys().size(); ++k) {
    const auto& key = features.keys()[k];
    if (const torch::Tensor* p = find_position_weight(key))
      weights.push_back(
          gather_position_weights(*p, positions[k], feature_what("PositionWeightedModuleCollection", key)));
    else
      weights.push_back(torch::ones({positions[k].size(0)}, torch::TensorOptions().device(features.device())));
  }
  return KeyedJaggedTensor::unchecked(features.keys(), features.values(), features.lengths(), torch::cat(weights),
                                      features.stride());
}

// ---------------------------------------------------------------------------

PositionWeightedProcessorImpl::PositionWeightedProcessorImpl(FeatureLengths max_feature_lengths, torch::Device device)
    : max_feature_lengths_(std::move(max_feature_lengths)) {
  check_lengths_positive(max_feature_lengths_, "PositionWeightedProcessor");
  position_weights_ = register_module("position_weights", make_position_weights(max_feature_lengths_, device));
}

const torch::Tensor* PositionWeightedProcessorImpl::find_position_weight(const std::string& feature) const {
  return find_in(position_weights_, feature);
}

torch::Tensor& PositionWeightedProcessorImpl::position_weight(const std::string& feature) {
  return get_in(position_weights_, feature, "PositionWeightedProcessor");
}

KeyedJaggedTensor PositionWeightedProcessorImpl::forward(const KeyedJaggedTensor& features) {
  std::vector<int64_t> kept;
  for (size_t k = 0; k < features.keys().size(); ++k)
    if (find_position_weight(features.keys()[k])) kept.push_back(static_cast<int64_t>(k));
  if (kept.empty()) return features;
  const int64_t b = features.stride();
  const auto& opk = features.offset_per_key();
  const auto positions = positions_per_key(features);
  std::vector<std::string> keys;
  std::vector<torch::Tensor> values, lengths, weights;
  for (int64_t k : kept) {
    const auto& key = features.keys()[k];
    keys.push_back(key);
    values.push_back(features.values().slice(0, opk[k], opk[k + 1]));
    lengths.push_back(features.lengths().slice(0, k * b, (k + 1) * b));
    weights.push_back(gather_position_weights(*find_position_weight(key), positions[k],
                                              feature_what("PositionWeightedProcessor", key)));
  }
  return KeyedJaggedTensor::unchecked(std::move(keys), torch::cat(values), torch::cat(lengths), torch::cat(weights),
                                      b);
}

}  // namespace recmod
