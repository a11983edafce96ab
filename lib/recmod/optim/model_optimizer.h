#pragma once
// The optimizer of a whole model: torch::optim-equivalent updates for dense
// parameters, row-sparse updates (FBGEMM's semantics) for embedding tables.
#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/optim/optimizer_options.h"
#include "recmod/optim/row_update.h"

namespace recmod::optim {

class DenseOptimizer;
class SparseOptimizer;

/// Dense parameters get a torch::optim-equivalent optimizer; embedding tables
/// (grads dense or sparse COO) are updated row-sparsely: only rows touched in
/// the batch are read and written (for a dense gradient, rows whose gradient
/// is all zero are untouched).
///
/// Parameters are updated in place; parameters without a gradient are skipped
/// (as torch.optim does). State lives on each parameter's device, is created
/// at construction and is named, in state_dict():
///   dense.<param>.step, dense.<param>.sum                  (adagrad)
///   dense.<param>.step, dense.<param>.exp_avg, .exp_avg_sq (adam)
///   embedding.<param>.sum         (adagrad, shape of the table)
///   embedding.<param>.momentum1   (rowwise_adagrad, one value per row; TorchRec/FBGEMM's name)
///   stochastic_rounding           (int64 [seed, step]; only when a table rounds stochastically)
/// sgd has no state.
class ModelOptimizer {
 public:
  /// `embedding_stochastic_rounding` (empty: all false): per embedding
  /// table, whether its fp16 / bf16 rows are rounded stochastically
  /// (SparseOptimizer; its state then has the key "stochastic_rounding"),
  /// and `embedding_offsets` (empty: all (0, 0)) where a sharded table's
  /// values sit in its full table.
  ModelOptimizer(std::vector<std::pair<std::string, torch::Tensor>> dense, OptimizerOptions dense_options,
                 std::vector<std::pair<std::string, torch::Tensor>> embeddings, OptimizerOptions embedding_options,
                 std::vector<bool> embedding_stochastic_rounding = {},
                 std::vector<ShardOffsets> embedding_offsets = {});
  ~ModelOptimizer();
  ModelOptimizer(ModelOptimizer&&) noexcept;
  ModelOptimizer& operator=(ModelOptimizer&&) noexcept;

  /// Drops every gradient (sets it undefined, as PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  /// Applies one update from the current gradients.
  void step();
  /// The learning rates of the next steps (an lr schedule sets them before each step).
  void set_lr(double dense_lr, double embedding_lr);

  /// Optimizer state under the stable names above (tensors shared, not copied).
  StateDict state_dict() const;
  /// Strict: every key of state_dict() must be present with the same shape and
  /// dtype, and no other key; otherwise CheckpointError naming `origin` and the key.
  void load_state_dict(const StateDict& state, const std::string& origin);

 private:
  std::unique_ptr<DenseOptimizer> dense_;
  std::unique_ptr<SparseOptimizer> sparse_;
};

}  // namespace recmod::optim
