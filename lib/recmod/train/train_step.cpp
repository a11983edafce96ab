#include "recmod/train/train_step.h"

#include <torch/torch.h>

namespace recmod::train {

torch::Tensor loss_of(const torch::Tensor& logits, const data::Batch& batch) {
  return torch::binary_cross_entropy_with_logits(logits, batch.labels.select(1, 0));
}

torch::Tensor train_step(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                         const StepHooks& hooks) {
  training.zero_grad();
  torch::Tensor loss = loss_of(model->forward(batch, hooks.observer), batch);
  if (hooks.before_backward) hooks.before_backward(loss);
  loss.backward();
  if (hooks.after_backward) hooks.after_backward();
  training.step();
  return loss;
}

}  // namespace recmod::train
