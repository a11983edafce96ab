#include "recmod/train/train_step.h"

#include <torch/torch.h>

namespace recmod::train {

torch::Tensor loss_of(const torch::Tensor& logits, const data::Batch& batch) {
  return torch::binary_cross_entropy_with_logits(logits, batch.labels.select(1, 0));
}

torch::Tensor train_step(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                         const StepHooks& hooks) {
  training.zero_grad();
  const torch::Tensor logits = model->forward(batch, hooks.observer);
  if (hooks.after_forward) hooks.after_forward(logits.detach());
  // A rank can get no rows of a short last batch; it still runs backward
  // (the collectives need every rank), with a zero loss in the graph.
  torch::Tensor loss = batch.size() > 0 ? loss_of(logits, batch) : logits.sum();
  if (training.distributed()) {
    // This rank's share of the global mean: the gradients summed over the
    // ranks are then the gradient of the loss one process would compute.
    int64_t global = hooks.global_batch_size;
    if (global <= 0)
      for (int64_t s : training.comm().all_gather(batch.size())) global += s;
    loss = loss * (static_cast<double>(batch.size()) / static_cast<double>(std::max<int64_t>(global, 1)));
  }
  if (hooks.before_backward) hooks.before_backward(loss);
  loss.backward();
  training.all_reduce_gradients();
  if (hooks.after_backward) hooks.after_backward();
  training.step();
  if (training.distributed()) {
    std::vector<torch::Tensor> total{loss.detach().reshape({1}).to(torch::kDouble).cpu()};
    training.comm().all_reduce_sum(total);
    return total[0].to(loss.dtype()).reshape({});
  }
  return loss;
}

}  // namespace recmod::train
