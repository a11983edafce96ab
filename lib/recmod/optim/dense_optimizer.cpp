#include "recmod/optim/dense_optimizer.h"

#include <torch/torch.h>

#include <cmath>

namespace recmod::optim {

DenseOptimizer::DenseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> params, OptimizerOptions options)
    : params_(std::move(params)), options_(std::move(options)) {
  validate(options_, OptimizerRole::dense);
  states_.reserve(params_.size());
  for (const auto& [name, p] : params_) {
    TORCH_CHECK(p.defined(), "DenseOptimizer: parameter '", name, "' is undefined");
    State s;
    // A CPU scalar wherever the parameter lives: reading it never waits for a device.
    if (options_.type() != "sgd") s.step = torch::zeros({}, torch::kLong);
    if (options_.type() == "adagrad")
      s.sum = torch::full_like(p, options_.initial_accumulator_value(), torch::MemoryFormat::Preserve);
    if (options_.type() == "adam") {
      s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
      s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
    }
    states_.push_back(std::move(s));
  }
}

void DenseOptimizer::step() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    const torch::Tensor grad = p.grad().is_sparse() ? p.grad().to_dense() : p.grad();
    update(p, grad, states_[i]);
  }
}

void DenseOptimizer::update(torch::Tensor& p, const torch::Tensor& grad_in, State& s) const {
  const OptimizerOptions& o = options_;
  torch::Tensor grad = o.weight_decay() != 0 ? grad_in.add(p, o.weight_decay()) : grad_in;
  if (o.type() == "sgd") {
    p.add_(grad, -o.lr());
    return;
  }
  s.step.add_(1);
  const auto t = static_cast<double>(s.step.item<int64_t>());
  if (o.type() == "adagrad") {
    s.sum.addcmul_(grad, grad, 1.0);
    const torch::Tensor denom = s.sum.sqrt().add_(o.eps());
    p.addcdiv_(grad, denom, -o.lr());
    return;
  }
  // adam
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  s.exp_avg.mul_(o.beta1()).add_(grad, 1 - o.beta1());
  s.exp_avg_sq.mul_(o.beta2()).addcmul_(grad, grad, 1 - o.beta2());
  const torch::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(o.eps());
  p.addcdiv_(s.exp_avg, denom, -o.lr() / bias_correction1);
}

StateDict DenseOptimizer::state_dict() const {
  StateDict out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string prefix = "dense." + params_[i].first + ".";
    const State& s = states_[i];
    if (s.step.defined()) out.emplace_back(prefix + "step", s.step);
    if (s.sum.defined()) out.emplace_back(prefix + "sum", s.sum);
    if (s.exp_avg.defined()) out.emplace_back(prefix + "exp_avg", s.exp_avg);
    if (s.exp_avg_sq.defined()) out.emplace_back(prefix + "exp_avg_sq", s.exp_avg_sq);
  }
  return out;
}

}  // namespace recmod::optim
