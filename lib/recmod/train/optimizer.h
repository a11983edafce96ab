#pragma once
// The optimizer of a whole model: torch::optim-equivalent updates for dense
// parameters, row-sparse updates (FBGEMM's semantics) for embedding tables.
#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"

namespace recmod::train {

/// One optimizer's settings, as a config names them.
///   dense:      sgd | adagrad | adam              (torch.optim's SGD, Adagrad, Adam)
///   embeddings: sgd | adagrad | rowwise_adagrad   (FBGEMM's SGD, EXACT_ADAGRAD, EXACT_ROWWISE_ADAGRAD)
/// eps, beta1/beta2 and initial_accumulator_value apply where the algorithm has them.
struct OptimizerOptions {
  std::string type = "sgd";
  double lr = 0.01;
  double eps = 1e-8;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double weight_decay = 0.0;  // L2: g += weight_decay * w (embeddings: touched rows only)
  double initial_accumulator_value = 0.0;
};

/// The valid `type`s, for config validation and error messages.
const std::vector<std::string>& dense_optimizer_types();
const std::vector<std::string>& embedding_optimizer_types();

/// Throws InputError when options do not name a valid optimizer or hold an
/// invalid value (lr < 0, eps <= 0, betas outside [0, 1), ...); `role` is
/// "dense" or "embedding" and prefixes the message.
void validate_optimizer_options(const OptimizerOptions& options, const std::string& role);

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
/// sgd has no state.
class ModelOptimizer {
 public:
  ModelOptimizer(std::vector<std::pair<std::string, torch::Tensor>> dense, OptimizerOptions dense_options,
                 std::vector<std::pair<std::string, torch::Tensor>> embeddings, OptimizerOptions embedding_options);
  ~ModelOptimizer();
  ModelOptimizer(ModelOptimizer&&) noexcept;
  ModelOptimizer& operator=(ModelOptimizer&&) noexcept;

  /// Drops every gradient (sets it undefined, as PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  /// Applies one update from the current gradients.
  void step();

  /// Optimizer state under the stable names above (tensors shared, not copied).
  StateDict state_dict() const;
  /// Strict: every key of state_dict() must be present with the same shape and
  /// dtype, and no other key; otherwise CheckpointError naming `origin` and the key.
  void load_state_dict(const StateDict& state, const std::string& origin);

 private:
  std::unique_ptr<DenseOptimizer> dense_;
  std::unique_ptr<SparseOptimizer> sparse_;
};

}  // namespace recmod::train
