#include "recmod/optim/model_optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/optim/dense_optimizer.h"
#include "recmod/optim/sparse_optimizer.h"

namespace recmod::optim {

ModelOptimizer::ModelOptimizer(std::vector<std::pair<std::string, torch::Tensor>> dense, OptimizerOptions dense_options,
                               std::vector<std::pair<std::string, torch::Tensor>> embeddings,
                               OptimizerOptions embedding_options, std::vector<bool> embedding_stochastic_rounding,
                               std::vector<ShardOffsets> embedding_offsets)
    : dense_(std::make_unique<DenseOptimizer>(std::move(dense), std::move(dense_options))),
      sparse_(std::make_unique<SparseOptimizer>(std::move(embeddings), std::move(embedding_options),
                                                std::move(embedding_stochastic_rounding),
                                                std::move(embedding_offsets))) {}

ModelOptimizer::~ModelOptimizer() = default;
ModelOptimizer::ModelOptimizer(ModelOptimizer&&) noexcept = default;
ModelOptimizer& ModelOptimizer::operator=(ModelOptimizer&&) noexcept = default;

void ModelOptimizer::zero_grad() {
  for (const auto* params : {&dense_->parameters(), &sparse_->parameters()})
    for (const auto& [_, p] : *params)
      if (p.grad().defined()) p.mutable_grad().reset();
}

void ModelOptimizer::step() {
  dense_->step();
  sparse_->step();
}

void ModelOptimizer::set_lr(double dense_lr, double embedding_lr) {
  dense_->set_lr(dense_lr);
  sparse_->set_lr(embedding_lr);
}

StateDict ModelOptimizer::state_dict() const {
  StateDict out = dense_->state_dict();
  for (auto& entry : sparse_->state_dict()) out.push_back(std::move(entry));
  return out;
}

void ModelOptimizer::load_state_dict(const StateDict& source, const std::string& origin) {
  const StateDict target = state_dict();
  std::set<std::string> target_keys;
  for (const auto& [k, _] : target) target_keys.insert(k);
  for (const auto& [k, _] : source)
    if (!target_keys.count(k))
      throw CheckpointError(str_cat(origin, ": unexpected optimizer state key '", k, "'; the optimizer's keys are ",
                                    join_names({target_keys.begin(), target_keys.end()})));
  // Check everything before copying anything: a bad file leaves the state as it was.
  for (const auto& [k, dst] : target) {
    const torch::Tensor* src = find_tensor(source, k);
    if (!src)
      throw CheckpointError(str_cat(origin, ": missing optimizer state key '", k, "' (shape ", dst.sizes(), ")"));
    if (src->sizes() != dst.sizes())
      throw CheckpointError(str_cat(origin, ": optimizer state key '", k, "' has shape ", src->sizes(),
                                    ", the optimizer expects ", dst.sizes()));
    if (src->scalar_type() != dst.scalar_type())
      throw CheckpointError(str_cat(origin, ": optimizer state key '", k, "' has dtype ", src->scalar_type(),
                                    ", the optimizer expects ", dst.scalar_type()));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [k, dst] : target) dst.copy_(*find_tensor(source, k));
}

}  // namespace recmod::optim
