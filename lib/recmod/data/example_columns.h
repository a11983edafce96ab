#pragma once
// ExampleColumns: N examples held column by column in host memory, the form
// every reader produces and the batcher cuts, shuffles and turns into Batches.
#include <cstdint>
#include <string>
#include <vector>

#include "recmod/data/batch.h"

namespace recmod::data {

/// One sparse feature over N rows: row r holds ids[offsets[r]:offsets[r+1]]
/// (weights parallel to ids when the schema is weighted).
struct SparseColumn {
  std::vector<int64_t> offsets{0};  // N + 1 entries, offsets[0] = 0
  std::vector<int64_t> ids;
  std::vector<float> weights;  // empty unless weighted
  int64_t length(int64_t row) const { return offsets[row + 1] - offsets[row]; }
};

/// Row-major labels and dense values, one SparseColumn per schema feature.
class ExampleColumns {
 public:
  ExampleColumns() = default;
  explicit ExampleColumns(DataSchema schema);

  const DataSchema& schema() const { return schema_; }
  int64_t num_rows() const { return num_rows_; }
  bool empty() const { return num_rows_ == 0; }

  std::vector<float> labels;  // num_rows * num_labels
  std::vector<float> dense;   // num_rows * num_dense
  std::vector<float> sample_weights;  // num_rows when schema.sample_weights, else empty
  std::vector<SparseColumn> sparse;  // one per schema.sparse_features

  /// Call after pushing one row's labels, dense values and every feature's
  /// ids (and closing each feature's bag with `close_bag`).
  void finish_row() { ++num_rows_; }
  /// Ends the current row's bag of feature `f` (its ids are already pushed).
  void close_bag(size_t f) { sparse[f].offsets.push_back(static_cast<int64_t>(sparse[f].ids.size())); }
  /// Drops rows >= `rows` and anything pushed for an unfinished row (how a
  /// parser discards a bad record half way through).
  void truncate(int64_t rows);
  void reserve(int64_t rows, int64_t ids_per_feature_per_row = 1);

  /// Appends all rows of `other` (same schema).
  void append(const ExampleColumns& other);
  /// Rows [begin, end) as a new block.
  ExampleColumns slice(int64_t begin, int64_t end) const;
  /// Rows in the given order (indices may repeat).
  ExampleColumns take(const std::vector<int64_t>& rows) const;

  /// All rows as one Batch on the CPU: dense (N, num_dense), labels
  /// (N, num_labels), weights (N) with schema.sample_weights, KJT keys = schema.sparse_features with int64 lengths.
  Batch to_batch() const;
  /// The inverse of to_batch (for writers fed from Batches and for tests).
  static ExampleColumns from_batch(const Batch& batch, DataSchema schema);

 private:
  DataSchema schema_;
  int64_t num_rows_ = 0;
};

}  // namespace recmod::data
