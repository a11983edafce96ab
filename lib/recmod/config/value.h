#pragma once
// What flows along the edges of a model graph, and its shape as known at
// build time (without a batch): dense (B, N) tensors, pooled embeddings
// (KeyedTensor), sequence embeddings (per-feature JaggedTensors) and raw
// sparse features (KeyedJaggedTensor).
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "recmod/sparse/jagged_tensor.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod::config {

enum class ValueKind { Dense, Pooled, Sequence, Sparse };

/// Shape of a value, batch dimension left out.
struct ValueShape {
  ValueKind kind = ValueKind::Dense;
  int64_t width = 0;               // Dense: N of (B, N); Pooled: sum of dims
  std::vector<std::string> keys;   // Pooled/Sequence/Sparse: the keys
  std::vector<int64_t> dims;       // Pooled/Sequence: embedding dim per key

  static ValueShape dense(int64_t width) { return {ValueKind::Dense, width, {}, {}}; }
  static ValueShape pooled(std::vector<std::string> keys, std::vector<int64_t> dims);
  static ValueShape sequence(std::vector<std::string> keys, std::vector<int64_t> dims);
  static ValueShape sparse(std::vector<std::string> keys) { return {ValueKind::Sparse, 0, std::move(keys), {}}; }

  /// Dense and pooled values can feed modules that take (B, N).
  bool is_dense_like() const { return kind == ValueKind::Dense || kind == ValueKind::Pooled; }
  /// "(B, 64)", "KeyedTensor [t_a: 16, t_b: 16] (B, 32)", "KJT [C1, C2]", ...
  std::string str() const;
  /// "a dense (B, 64) tensor", ... for messages.
  std::string kind_name() const;
};

struct Value {
  ValueKind kind = ValueKind::Dense;
  torch::Tensor dense;
  KeyedTensor pooled;
  std::vector<std::pair<std::string, JaggedTensor>> sequence;
  KeyedJaggedTensor sparse;

  static Value of_dense(torch::Tensor t) { Value v; v.kind = ValueKind::Dense; v.dense = std::move(t); return v; }
  static Value of_pooled(KeyedTensor kt) { Value v; v.kind = ValueKind::Pooled; v.pooled = std::move(kt); return v; }
  static Value of_sparse(KeyedJaggedTensor kjt) { Value v; v.kind = ValueKind::Sparse; v.sparse = std::move(kjt); return v; }
  static Value of_sequence(std::vector<std::pair<std::string, JaggedTensor>> seq) {
    Value v; v.kind = ValueKind::Sequence; v.sequence = std::move(seq); return v;
  }
  /// (B, N): the tensor of a dense value, the values of a pooled one.
  torch::Tensor as_dense() const;
};

}  // namespace recmod::config
