#pragma once
// KeyedJaggedTensor, as torchrec.sparse.KeyedJaggedTensor: several jagged
// features ("keys") over one batch of B samples, or, with a variable batch
// per feature (TorchRec's VBE), S_k samples for key k.
#include <torch/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/sparse/jagged_tensor.h"

namespace recmod {

/// TorchRec's KJT `inverse_indices` (a (List[str], Tensor) tuple): for the
/// feature keys[r], indices[r][b] is the sample of that feature that batch
/// row b uses. indices is int64 (len(keys), B_out); rows are found by name.
struct InverseIndices {
  std::vector<std::string> keys;
  torch::Tensor indices;
};

/// Layout (key-major): lengths[k * B + b] is the number of ids of sample b
/// for key k; values (and optional weights) hold the ids in that order;
/// offsets are global: offsets[i] = sum(lengths[:i]), offsets.size = K*B + 1.
///
/// Example (TorchRec's docstring): keys [f1, f2], B = 3,
///   lengths [2, 0, 1, 1, 1, 3] -> offsets [0, 2, 2, 3, 4, 5, 8],
///   length_per_key [3, 5], offset_per_key [0, 3, 8].
///
/// Variable batch per feature (TorchRec's stride_per_key_per_rank): key k
/// has S_k = sum(stride_per_key_per_rank[k]) samples, its lengths are
/// lengths[lengths_offset_per_key[k] : lengths_offset_per_key[k + 1]]; such
/// a KJT has no single stride, and stride() refuses it (code written for one
/// batch size must not misread it): use stride_per_key(). inverse_indices,
/// with or without a variable batch, say how the samples expand to a batch
/// of B_out rows (an EmbeddingBagCollection's output rows).
class KeyedJaggedTensor {
 public:
  KeyedJaggedTensor() = default;

  /// Throws InputError when the invariants do not hold (see JaggedTensor) or
  /// when the number of keys does not divide lengths.numel(). `stride` (B)
  /// is needed only when there are no keys.
  static KeyedJaggedTensor from_lengths(std::vector<std::string> keys, torch::Tensor values,
                                        torch::Tensor lengths,
                                        std::optional<torch::Tensor> weights = std::nullopt,
                                        std::optional<int64_t> stride = std::nullopt);
  static KeyedJaggedTensor from_offsets(std::vector<std::string> keys, torch::Tensor values,
                                        torch::Tensor offsets,
                                        std::optional<torch::Tensor> weights = std::nullopt,
                                        std::optional<int64_t> stride = std::nullopt);
  /// A variable batch per feature: key k has sum(stride_per_key_per_rank[k])
  /// samples (one list per key, one entry per rank; unsharded modules use
  /// the sum). Throws InputError when the lengths do not add up.
  static KeyedJaggedTensor from_lengths_variable_stride(std::vector<std::string> keys, torch::Tensor values,
                                                        torch::Tensor lengths, std::optional<torch::Tensor> weights,
                                                        std::vector<std::vector<int64_t>> stride_per_key_per_rank);
  /// The same KJT carrying `inverse_indices` (int64, 2-D, entries >= 0;
  /// each row is checked against its feature's sample count where used).
  KeyedJaggedTensor with_inverse_indices(InverseIndices inverse_indices) const;
  /// From per-key JaggedTensors that all have the same number of rows.
  static KeyedJaggedTensor from_jt_dict(const std::vector<std::pair<std::string, JaggedTensor>>& jts);
  /// No keys, no values, batch size `stride`.
  static KeyedJaggedTensor empty(bool is_weighted = false, torch::Device device = torch::kCPU,
                                 int64_t stride = 0);
  /// Keys of all inputs in order; all must have the same stride (no
  /// variable batch), and either all or none carry weights.
  static KeyedJaggedTensor concat(const std::vector<KeyedJaggedTensor>& kjts);

  const std::vector<std::string>& keys() const { return keys_; }
  const torch::Tensor& values() const { return values_; }
  const torch::Tensor& lengths() const { return lengths_; }
  const torch::Tensor& offsets() const { return offsets_; }
  bool has_weights() const { return weights_.has_value(); }
  const torch::Tensor& weights() const;  // throws InputError when absent
  const std::optional<torch::Tensor>& weights_or_none() const { return weights_; }
  /// The batch size B; throws InputError for a variable batch per feature.
  int64_t stride() const;
  /// TorchRec's variable_stride_per_key(): built with stride_per_key_per_rank.
  bool variable_stride_per_key() const { return !stride_per_key_per_rank_.empty(); }
  /// S_k per key (B for every key without a variable batch).
  std::vector<int64_t> stride_per_key() const;
  /// One list per key ([[B]] per key without a variable batch, as TorchRec).
  std::vector<std::vector<int64_t>> stride_per_key_per_rank() const;
  /// Where each key's lengths start in lengths(): K + 1 entries.
  const std::vector<int64_t>& lengths_offset_per_key() const { return lengths_offset_per_key_; }
  /// Key k's lengths (S_k entries, a view).
  torch::Tensor lengths_of_key(int64_t k) const;
  const std::optional<InverseIndices>& inverse_indices_or_none() const { return inverse_indices_; }
  /// Throws InputError when absent.
  const InverseIndices& inverse_indices() const;
  const std::vector<int64_t>& length_per_key() const { return length_per_key_; }
  const std::vector<int64_t>& offset_per_key() const { return offset_per_key_; }
  /// key -> position in keys().
  std::map<std::string, int64_t> index_per_key() const;
  bool has_key(const std::string& key) const;

  /// The jagged feature of one key: B rows, local offsets. Throws
  /// InputError naming the available keys when `key` is absent.
  JaggedTensor operator[](const std::string& key) const;
  /// Key order preserved.
  std::vector<std::pair<std::string, JaggedTensor>> to_dict() const;

  /// Consecutive groups of keys of the given sizes (which must sum to the
  /// number of keys; zero-size segments give empty KJTs of the same stride).
  std::vector<KeyedJaggedTensor> split(const std::vector<int64_t>& segments) const;
  /// New key order keys[indices[0]], keys[indices[1]], ...; indices may
  /// repeat or leave keys out.
  KeyedJaggedTensor permute(const std::vector<int64_t>& indices) const;
  /// Only the given keys, in the given order (each must be present).
  KeyedJaggedTensor select(const std::vector<std::string>& keys) const;

  KeyedJaggedTensor to(const torch::Device& device, bool non_blocking = false) const;
  /// The same KJT with `f` applied to each of its defined tensors (values, lengths,
  /// offsets, weights, inverse indices); the host-side metadata (keys,
  /// strides, length_per_key, offset_per_key) is kept as it is. `f` must
  /// keep each tensor's shape and dtype (e.g. a device copy, pinning).
  KeyedJaggedTensor map_tensors(const std::function<torch::Tensor(const torch::Tensor&)>& f) const;
  torch::Device device() const { return values_.device(); }

  /// Build from parts known to be consistent; no checks, no host sync
  /// beyond length_per_key.
  static KeyedJaggedTensor unchecked(std::vector<std::string> keys, torch::Tensor values,
                                     torch::Tensor lengths, std::optional<torch::Tensor> weights,
                                     int64_t stride);

 private:
  void finish();  // offsets, lengths_offset_per_key, length_per_key, offset_per_key from lengths
  /// A KJT like this one (variable strides and inverse indices) over a
  /// subset of its keys, given as positions.
  KeyedJaggedTensor with_parts(std::vector<int64_t> positions, std::vector<std::string> keys, torch::Tensor values,
                               torch::Tensor lengths, std::optional<torch::Tensor> weights) const;
  std::vector<std::string> keys_;
  torch::Tensor values_;
  torch::Tensor lengths_;
  torch::Tensor offsets_;
  std::optional<torch::Tensor> weights_;
  int64_t stride_ = 0;
  std::vector<int64_t> length_per_key_;
  std::vector<int64_t> offset_per_key_;
  std::vector<std::vector<int64_t>> stride_per_key_per_rank_;  // empty: one batch size
  std::vector<int64_t> lengths_offset_per_key_;
  std::optional<InverseIndices> inverse_indices_;
};

}  // namespace recmod
