#pragma once
// One training step, written once: the trainer, `recmod profile` and the
// benchmarks all call train_step(), so what they time is what trains.
#include <torch/types.h>

#include <functional>

#include "recmod/config/graph.h"
#include "recmod/data/batch.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

/// The loss of a batch's logits: the one place the loss is defined.
/// - No tasks: logits (B), binary cross-entropy with logits against label
///   column 0, the mean over the batch of w_i * l_i (w_i the batch's sample
///   weights, 1 without them; torch's BCEWithLogitsLoss(weight=w)).
/// - Tasks (the config's `tasks:`): logits (B, T); sum_t weight_t * loss_t,
///   loss_t = mean_i w_i * l_t(logits[i, t], labels[i, label_t]), l_t binary
///   cross-entropy with logits (bce) or the squared error (mse).
/// InputError when a task's label column is not in the batch.
torch::Tensor loss_of(const torch::Tensor& logits, const data::Batch& batch,
                      const std::vector<config::TaskSpec>& tasks = {});

/// Optional hooks into a step, in the order they run.
struct StepHooks {
  config::NodeObserver* observer = nullptr;                     // sees each node's forward
  /// The batch's logits (B) or (B, T), e.g. train metrics. With a captured
  /// step (training.cuda_graphs) a buffer the next step overwrites: copy to keep.
  std::function<void(const torch::Tensor& logits)> after_forward;
  std::function<void(const torch::Tensor& loss)> before_backward;  // e.g. a finiteness check
  std::function<void()> after_backward;                          // before the optimizer step
  /// Distributed runs: the rows of the global batch this step is a part of
  /// (the caller sliced it, so it knows); 0: asked of the ranks (a collective).
  int64_t global_batch_size = 0;
  /// Distributed runs: this rank's request to stop after this step, summed
  /// over the ranks inside the gradient all-reduce; *stop_agreed is set to
  /// whether any rank asked (so every rank stops at the same boundary).
  bool stop_requested = false;
  bool* stop_agreed = nullptr;
};

/// zero_grad, forward (the graph's executor), loss, backward, optimizer step
/// (fused embedding tables were updated inside backward). `batch` must be on
/// the model's device. Returns the loss (a scalar tensor). With
/// training.cuda_graphs on a CUDA device (training.graph_step()), the split
/// step of train/graph_step.h, else train_step_eager.
torch::Tensor train_step(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                         const StepHooks& hooks = {});
/// The step as autograd runs it: the whole graph forward, loss.backward().
torch::Tensor train_step_eager(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                               const StepHooks& hooks = {});

}  // namespace recmod::train
