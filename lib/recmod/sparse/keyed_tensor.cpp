#include "recmod/sparse/keyed_tensor.h"

#include <torch/torch.h>


#include "recmod/common/errors.h"

namespace recmod {

KeyedTensor::KeyedTensor(std::vector<std::string> keys, std::vector<int64_t> length_per_key, torch::Tensor values,
                         int64_t key_dim)
    : keys_(std::move(keys)), length_per_key_(std::move(length_per_key)), values_(std::move(values)), key_dim_(key_dim) {
  if (keys_.size() != length_per_key_.size())
    throw_input_error("KeyedTensor: ", keys_.size(), " keys but ", length_per_key_.size(), " entries in length_per_key");
  if (!values_.defined() || key_dim_ < 0 || key_dim_ >= values_.dim())
    throw_input_error("KeyedTensor: key_dim ", key_dim_, " is not a dimension of values of shape ",
         values_.defined() ? values_.sizes() : c10::IntArrayRef{});
  int64_t total = 0;
  for (auto l : length_per_key_) {
    if (l < 0) throw_input_error("KeyedTensor: length_per_key entries must be >= 0, got ", l);
    total += l;
  }
  if (total != values_.size(key_dim_))
    throw_input_error("KeyedTensor: length_per_key sums to ", total, " but values have ", values_.size(key_dim_),
         " columns along key_dim ", key_dim_, " (shape ", values_.sizes(), ")");
}

KeyedTensor KeyedTensor::from_tensor_list(std::vector<std::string> keys, const std::vector<torch::Tensor>& tensors,
                                          int64_t key_dim) {
  if (keys.size() != tensors.size())
    throw_input_error("KeyedTensor::from_tensor_list: ", keys.size(), " keys but ", tensors.size(), " tensors");
  if (tensors.empty()) throw_input_error("KeyedTensor::from_tensor_list: needs at least one tensor");
  std::vector<int64_t> lengths;
  for (const auto& t : tensors) lengths.push_back(t.size(key_dim));
  return KeyedTensor(std::move(keys), std::move(lengths), torch::cat(tensors, key_dim), key_dim);
}

std::vector<int64_t> KeyedTensor::offset_per_key() const {
  std::vector<int64_t> out(length_per_key_.size() + 1, 0);
  for (size_t i = 0; i < length_per_key_.size(); ++i) out[i + 1] = out[i] + length_per_key_[i];
  return out;
}

torch::Tensor KeyedTensor::operator[](const std::string& key) const {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) throw_input_error("KeyedTensor: no key '", key, "'; keys are ", join_names(keys_));
  const auto i = it - keys_.begin();
  const auto offsets = offset_per_key();
  return values_.slice(key_dim_, offsets[i], offsets[i + 1]);
}

std::vector<std::pair<std::string, torch::Tensor>> KeyedTensor::to_dict() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const auto offsets = offset_per_key();
  for (size_t i = 0; i < keys_.size(); ++i)
    out.emplace_back(keys_[i], values_.slice(key_dim_, offsets[i], offsets[i + 1]));
  return out;
}

std::vector<torch::Tensor> KeyedTensor::regroup(const std::vector<KeyedTensor>& inputs,
                                                const std::vector<std::vector<std::string>>& groups) {
  std::vector<torch::Tensor> out;
  out.reserve(groups.size());
  for (const auto& group : groups) {
    std::vector<torch::Tensor> parts;
    for (const auto& key : group) {
      const KeyedTensor* owner = nullptr;
      for (const auto& kt : inputs)
        if (std::find(kt.keys().begin(), kt.keys().end(), key) != kt.keys().end()) {
          owner = &kt;
          break;
        }
      if (!owner) throw_input_error("KeyedTensor::regroup: key '", key, "' is in no input KeyedTensor");
      parts.push_back((*owner)[key]);
    }
    if (parts.empty()) throw_input_error("KeyedTensor::regroup: empty group");
    out.push_back(torch::cat(parts, 1));
  }
  return out;
}

KeyedTensor KeyedTensor::to(const torch::Device& device, bool non_blocking) const {
  return KeyedTensor(keys_, length_per_key_, values_.to(device, non_blocking), key_dim_);
}

}  // namespace recmod
