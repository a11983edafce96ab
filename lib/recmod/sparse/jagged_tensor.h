#pragma once
// JaggedTensor: a batch of variable-length rows, as torchrec.sparse.JaggedTensor.
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

namespace recmod {

/// Offsets [0, l0, l0+l1, ...] of a 1-D lengths tensor (same dtype and device).
torch::Tensor offsets_from_lengths(const torch::Tensor& lengths);
/// Lengths o[i+1] - o[i] of a 1-D offsets tensor.
torch::Tensor lengths_from_offsets(const torch::Tensor& offsets);

/// values[i] are the entries of all rows concatenated; row r holds
/// values[offsets[r]:offsets[r+1]], lengths[r] = offsets[r+1] - offsets[r].
/// Optional weights are parallel to values (one per value).
/// Construction checks the invariants and throws recmod::InputError:
///   lengths >= 0, sum(lengths) == values.size(0), offsets start at 0 and
///   never decrease, weights.size(0) == values.size(0).
class JaggedTensor {
 public:
  JaggedTensor() = default;

  static JaggedTensor from_lengths(torch::Tensor values, torch::Tensor lengths,
                                   std::optional<torch::Tensor> weights = std::nullopt);
  static JaggedTensor from_offsets(torch::Tensor values, torch::Tensor offsets,
                                   std::optional<torch::Tensor> weights = std::nullopt);
  /// No validation; for modules that build outputs known to be well formed.
  static JaggedTensor unchecked(torch::Tensor values, torch::Tensor lengths, torch::Tensor offsets,
                                std::optional<torch::Tensor> weights = std::nullopt);
  /// One row per tensor of `rows` (each 1-D, or N-D with rows along dim 0).
  static JaggedTensor from_dense(const std::vector<torch::Tensor>& rows,
                                 const std::vector<torch::Tensor>& weights = {});

  const torch::Tensor& values() const { return values_; }
  const torch::Tensor& lengths() const { return lengths_; }
  const torch::Tensor& offsets() const { return offsets_; }
  bool has_weights() const { return weights_.has_value(); }
  /// Throws InputError when there are no weights.
  const torch::Tensor& weights() const;
  const std::optional<torch::Tensor>& weights_or_none() const { return weights_; }
  int64_t num_rows() const { return lengths_.numel(); }

  /// Rows as separate tensors (values[offsets[r]:offsets[r+1]]).
  std::vector<torch::Tensor> to_dense() const;
  std::vector<torch::Tensor> to_dense_weights() const;
  /// (num_rows, max(desired_length, longest row)) padded with padding_value
  /// (1-D values only).
  torch::Tensor to_padded_dense(std::optional<int64_t> desired_length = std::nullopt,
                                double padding_value = 0.0) const;

  JaggedTensor to(const torch::Device& device, bool non_blocking = false) const;
  torch::Device device() const { return values_.device(); }

 private:
  JaggedTensor(torch::Tensor values, torch::Tensor lengths, torch::Tensor offsets,
               std::optional<torch::Tensor> weights);
  torch::Tensor values_;
  torch::Tensor lengths_;
  torch::Tensor offsets_;
  std::optional<torch::Tensor> weights_;
};

namespace detail {
/// Checks of the jagged invariants shared by JaggedTensor and
/// KeyedJaggedTensor; `what` names the object in the message.
void check_lengths(const torch::Tensor& lengths, int64_t num_values, const std::string& what);
void check_offsets(const torch::Tensor& offsets, int64_t num_values, const std::string& what);
void check_weights(const std::optional<torch::Tensor>& weights, const torch::Tensor& values,
                   const std::string& what);
}  // namespace detail

}  // namespace recmod
