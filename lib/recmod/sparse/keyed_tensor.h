#pragma once
// KeyedTensor, as torchrec.sparse.KeyedTensor: dense per-key blocks
// concatenated along key_dim (pooled embeddings: (B, sum(D_k)) with key_dim 1).
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace recmod {

class KeyedTensor {
 public:
  KeyedTensor() = default;
  /// Throws InputError when length_per_key does not match keys or does not
  /// sum to values.size(key_dim).
  KeyedTensor(std::vector<std::string> keys, std::vector<int64_t> length_per_key, torch::Tensor values,
              int64_t key_dim = 1);
  /// Concatenate per-key tensors along key_dim (TorchRec's from_tensor_list).
  static KeyedTensor from_tensor_list(std::vector<std::string> keys, const std::vector<torch::Tensor>& tensors,
                                      int64_t key_dim = 1);

  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<int64_t>& length_per_key() const { return length_per_key_; }
  std::vector<int64_t> offset_per_key() const;
  const torch::Tensor& values() const { return values_; }
  int64_t key_dim() const { return key_dim_; }

  /// The block of one key (a view of values). Throws InputError when absent.
  torch::Tensor operator[](const std::string& key) const;
  std::vector<std::pair<std::string, torch::Tensor>> to_dict() const;

  /// TorchRec's KeyedTensor.regroup: for each group of keys, the
  /// concatenation (along dim 1) of those keys' blocks, taken from whichever
  /// input KeyedTensor holds them.
  static std::vector<torch::Tensor> regroup(const std::vector<KeyedTensor>& inputs,
                                            const std::vector<std::vector<std::string>>& groups);

  KeyedTensor to(const torch::Device& device, bool non_blocking = false) const;
  torch::Device device() const { return values_.device(); }

 private:
  std::vector<std::string> keys_;
  std::vector<int64_t> length_per_key_;
  torch::Tensor values_;
  int64_t key_dim_ = 1;
};

}  // namespace recmod
