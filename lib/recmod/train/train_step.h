#pragma once
// One training step, written once: the trainer, `recmod profile` and the
// benchmarks all call train_step(), so what they time is what trains.
#include <torch/types.h>

#include <functional>

#include "recmod/config/graph.h"
#include "recmod/data/batch.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

/// The loss of a batch's logits (B): binary cross-entropy with logits
/// against the first label column, averaged over the batch. The one place
/// the loss is defined (weighted and multi-task losses go here).
torch::Tensor loss_of(const torch::Tensor& logits, const data::Batch& batch);

/// Optional hooks into a step, in the order they run.
struct StepHooks {
  config::NodeObserver* observer = nullptr;                     // sees each node's forward
  std::function<void(const torch::Tensor& logits)> after_forward;  // the batch's logits (B), e.g. train metrics
  std::function<void(const torch::Tensor& loss)> before_backward;  // e.g. a finiteness check
  std::function<void()> after_backward;                          // before the optimizer step
  /// Distributed runs: the rows of the global batch this step is a part of
  /// (the caller sliced it, so it knows); 0: asked of the ranks (a collective).
  int64_t global_batch_size = 0;
};

/// zero_grad, forward (the graph's executor), loss, backward, optimizer step
/// (fused embedding tables were updated inside backward). `batch` must be on
/// the model's device. Returns the loss (a scalar tensor).
torch::Tensor train_step(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                         const StepHooks& hooks = {});

}  // namespace recmod::train
