#pragma once
// Row-sparse optimizers for embedding tables, with FBGEMM's semantics (what
// TorchRec's fused embedding optimizers run): a batch reads and writes only
// the rows it touched.
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/optim/optimizer_options.h"
#include "recmod/optim/row_update.h"

namespace recmod::optim {

/// The rows of a table's gradient that a batch touched: sorted unique row ids
/// (int64, n) and their gradients (n, D), duplicates already summed.
struct RowGradients {
  torch::Tensor rows;
  torch::Tensor values;
};

/// From a sparse COO gradient (coalesced, so duplicate ids are summed) or a
/// dense (N, D) one (the rows with any nonzero entry).
RowGradients touched_rows(const torch::Tensor& grad);

/// Applies one update (apply_row_update's rule, row_update.h) to the touched
/// rows of `weight` (N, D); `state` is the rule's state in the table's dtype
/// (make_row_state), float32 for fp16 / bf16 tables, whose update is
/// computed in float32 and written back as `rounding` says (to nearest by
/// default; RowRounding::row is set per row). Contiguous float / double /
/// fp16 / bf16 CPU tables go through a kernel parallel over rows that calls
/// apply_row_update as the fused backward does (each row is written by one
/// thread, so results do not depend on the thread count; for the same row
/// gradients, seed and step the rows are bit-identical to the fused path's);
/// any other table, or `use_tensor_ops`, through device-generic
/// index_select/index_copy_.
void update_rows(const OptimizerOptions& options, torch::Tensor& weight, torch::Tensor& state, const RowGradients& grad,
                 bool use_tensor_ops = false, const RowRounding& rounding = {});

/// The embedding-table half of ModelOptimizer.
class SparseOptimizer {
 public:
  /// `stochastic_rounding` (empty: all false) per table: its fp16 / bf16
  /// rows are written back rounded stochastically, with a seed drawn from
  /// torch's default generator when any is set (RoundingState::drawn) and
  /// one step of the random bits per step(). `offsets` (empty: all (0, 0))
  /// per table: where a shard's values sit in its full table, so that its
  /// random bits are the full table's (ShardOffsets).
  SparseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> tables, OptimizerOptions options,
                  std::vector<bool> stochastic_rounding = {}, std::vector<ShardOffsets> offsets = {});
  void step();
  /// The learning rate of the next steps (a schedule sets it before each step).
  void set_lr(double lr) { options_.lr(lr); }
  /// Keys "embedding.<param>.sum" / "embedding.<param>.momentum1" (see
  /// optimizer.h), and "stochastic_rounding" (int64 [seed, step]) when a
  /// table rounds stochastically.
  StateDict state_dict() const;
  RoundingState& rounding_state() { return rounding_; }
  const std::vector<std::pair<std::string, torch::Tensor>>& parameters() const { return tables_; }

 private:
  std::vector<std::pair<std::string, torch::Tensor>> tables_;
  OptimizerOptions options_;
  std::vector<torch::Tensor> states_;  // undefined for sgd
  std::vector<bool> stochastic_rounding_;
  std::vector<ShardOffsets> offsets_;
  RoundingState rounding_;
};

}  // namespace recmod::optim
