#pragma once
// What the data layer hands to the model: one batch of labelled examples
// with dense float features and jagged sparse id features.
#include <torch/types.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod::data {

/// The columns of a data set, independent of its file format.
struct DataSchema {
  int64_t num_dense = 0;                     // dense float features per example
  std::vector<std::string> sparse_features;  // KJT keys, in this order
  int64_t num_labels = 1;                    // label columns per example
  bool weighted = false;                     // sparse ids carry per-id weights
  bool sample_weights = false;               // each example carries a weight (loss and metrics)
};

/// B examples. Ids are raw int64 values as read (hashing into a table's
/// range is the model's business, not the reader's).
struct Batch {
  torch::Tensor dense;        // (B, num_dense) float32; (B, 0) when none
  KeyedJaggedTensor sparse;   // keys = schema.sparse_features, stride B
  torch::Tensor labels;       // (B, num_labels) float32
  // (B) float32 sample weights; undefined unless schema.sample_weights. The
  // default initializer lets Batch{dense, sparse, labels} leave it out
  // without -Wmissing-field-initializers.
  torch::Tensor weights = {};
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  Batch to(const torch::Device& device, bool non_blocking = false) const {
    return map_tensors([&](const torch::Tensor& t) { return t.to(device, non_blocking); });
  }
  /// The same batch with `f` applied to each defined tensor (the KJT's
  /// included: KeyedJaggedTensor::map_tensors); `f` keeps shapes and dtypes.
  Batch map_tensors(const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
    auto g = [&](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
    return Batch{g(dense), sparse.map_tensors(f), g(labels), g(weights)};
  }
  /// Every defined tensor of the batch, the KJT's included.
  std::vector<torch::Tensor> tensors() const {
    std::vector<torch::Tensor> out{dense, labels, sparse.values(), sparse.lengths(), sparse.offsets()};
    if (weights.defined()) out.push_back(weights);
    if (sparse.has_weights()) out.push_back(sparse.weights());
    if (sparse.inverse_indices_or_none()) out.push_back(sparse.inverse_indices_or_none()->indices);
    out.erase(std::remove_if(out.begin(), out.end(), [](const torch::Tensor& t) { return !t.defined(); }), out.end());
    return out;
  }
};

/// A stream of batches; next() returns nullopt at the end of the data.
/// Implementations may read ahead on background threads.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual const DataSchema& schema() const = 0;
  virtual std::optional<Batch> next() = 0;
};

}  // namespace recmod::data
