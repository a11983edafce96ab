#pragma once
// torch.optim's SGD, Adagrad and Adam for dense parameters, with state that
// recmod names and checkpoints itself.
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/optim/optimizer_options.h"

namespace recmod::optim {

/// The same arithmetic, in the same order, as torch::optim (1.13 and 2.x) with
/// momentum 0, lr_decay 0, amsgrad false:
///   sgd:     p -= lr * (g + wd p)
///   adagrad: s += g'^2;  p -= lr * g' / (sqrt(s) + eps),                g' = g + wd p
///   adam:    m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;
///            p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
/// A sparse gradient is densified first (dense parameters rarely have one).
/// Contiguous fp32 CPU parameters take one fused loop per parameter (each
/// element read and written once, AVX2 where the CPU has it, the same values
/// at any thread count); they agree with the per-op path within float
/// rounding (torch's kernels may use an FMA where the loop does not; tested
/// to 1e-6 relative). Anything else takes the per-op path: all such
/// parameters at once, as torch's _foreach_ ops (one multi-tensor kernel
/// per operation on a GPU), when their step counts agree.
class DenseOptimizer {
 public:
  DenseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> params, OptimizerOptions options);
  void step();
  /// The learning rate of the next steps (a schedule sets it before each step).
  void set_lr(double lr) { options_.lr(lr); }
  /// Keys "dense.<param>.<state>" (see model_optimizer.h).
  StateDict state_dict() const;
  const std::vector<std::pair<std::string, torch::Tensor>>& parameters() const { return params_; }
  /// true: every parameter takes the per-op path (libtorch ops, what the
  /// fused loop is tested and benchmarked against).
  void use_tensor_ops(bool yes) { tensor_ops_ = yes; }

 private:
  struct State {
    torch::Tensor step;  // int64 CPU scalar: updates applied so far
    torch::Tensor sum, exp_avg, exp_avg_sq;
  };
  bool fused(const torch::Tensor& param, const torch::Tensor& grad, const State& state) const;
  bool same_step(const std::vector<size_t>& which) const;
  void update(torch::Tensor& param, const torch::Tensor& grad, State& state) const;  // the fused loop
  void update_with_tensor_ops(torch::Tensor& param, const torch::Tensor& grad, State& state) const;
  void update_with_foreach_ops(const std::vector<size_t>& which);

  std::vector<std::pair<std::string, torch::Tensor>> params_;
  OptimizerOptions options_;
  std::vector<State> states_;
  bool tensor_ops_ = false;
};

}  // namespace recmod::optim
