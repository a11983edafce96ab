#include "recmod/train/train_step.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/train/graph_step.h"

namespace recmod::train {

namespace {
// mean_i w_i * l_i: the batch's mean of the weighted per-example losses.
torch::Tensor weighted_mean(const torch::Tensor& per_example, const data::Batch& batch) {
  return batch.weights.defined() ? (per_example * batch.weights.to(per_example.dtype())).mean() : per_example.mean();
}
}  // namespace

torch::Tensor loss_of(const torch::Tensor& logits, const data::Batch& batch, const std::vector<config::TaskSpec>& tasks) {
  if (tasks.empty())
    return weighted_mean(torch::binary_cross_entropy_with_logits(logits, batch.labels.select(1, 0), {}, {},
                                                                 at::Reduction::None),
                         batch);
  torch::Tensor total;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const auto& task = tasks[t];
    if (task.label >= batch.labels.size(1))
      throw_input_error("task '", task.name, "' learns label column ", task.label, " ('", task.label_name,
                        "'), but the data has ", batch.labels.size(1), " label column(s)");
    const torch::Tensor x = logits.select(1, static_cast<int64_t>(t));
    const torch::Tensor y = batch.labels.select(1, task.label);
    const torch::Tensor per_example = task.loss == "mse"
                                          ? (x - y).pow(2)
                                          : torch::binary_cross_entropy_with_logits(x, y, {}, {}, at::Reduction::None);
    const torch::Tensor loss = weighted_mean(per_example, batch) * task.weight;
    total = total.defined() ? total + loss : loss;
  }
  return total;
}

torch::Tensor train_step(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                         const StepHooks& hooks) {
  if (GraphStep* split = training.graph_step()) return split->step(training, batch, hooks);
  return train_step_eager(model, training, batch, hooks);
}

torch::Tensor train_step_eager(config::ModelGraph& model, TrainingSetup& training, const data::Batch& batch,
                               const StepHooks& hooks) {
  training.zero_grad();
  const torch::Tensor logits = model->forward(batch, hooks.observer);
  if (hooks.after_forward) hooks.after_forward(logits.detach());
  // A rank can get no rows of a short last batch; it still runs backward
  // (the collectives need every rank), with a zero loss in the graph.
  torch::Tensor loss = batch.size() > 0 ? loss_of(logits, batch, training.tasks()) : logits.sum();
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
  // The global loss and the stop requests ride in the gradients' all-reduce.
  const std::vector<double> sums = training.all_reduce_gradients(
      training.distributed() ? std::vector<double>{loss.detach().item<double>(), hooks.stop_requested ? 1.0 : 0.0}
                             : std::vector<double>{});
  if (hooks.after_backward) hooks.after_backward();
  training.step();
  if (training.distributed()) {
    if (hooks.stop_agreed) *hooks.stop_agreed = sums[1] > 0;
    return torch::tensor(sums[0], loss.options()).reshape({});
  }
  return loss;
}

}  // namespace recmod::train
