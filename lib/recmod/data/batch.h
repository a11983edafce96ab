#pragma once
// What the data layer hands to the model: one batch of labelled examples
// with dense float features and jagged sparse id features.
#include <torch/types.h>

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
    return Batch{dense.to(device, non_blocking), sparse.to(device, non_blocking), labels.to(device, non_blocking),
                 weights.defined() ? weights.to(device, non_blocking) : torch::Tensor()};
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
