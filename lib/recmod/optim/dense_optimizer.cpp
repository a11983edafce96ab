#include "recmod/optim/dense_optimizer.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <cmath>

namespace recmod::optim {

namespace {

/// One step's constants, as floats (torch::optim casts its double
/// arguments to the tensor's dtype the same way).
struct Coefficients {
  float wd, neg_lr;        // all
  float b1, one_minus_b1;  // adam
  float b2, one_minus_b2;  // adam
  float sqrt_bc2, eps;     // adam (sqrt_bc2), adagrad and adam (eps)
};

/// The fused update of elements [begin, end): each element read and
/// written once. `kind`: 0 sgd, 1 adagrad, 2 adam. Written as torch's
/// kernels compute it, operation by operation (a * b + c, never an FMA),
/// so the scalar and vector loops agree bit for bit.
template <int kind>
inline void update_scalar(float* p, const float* g, float* s1, float* s2, const Coefficients& c, int64_t begin,
                          int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float grad = c.wd != 0 ? g[i] + c.wd * p[i] : g[i];
    if constexpr (kind == 0) {
      p[i] = p[i] + c.neg_lr * grad;
    } else if constexpr (kind == 1) {
      const float sum = s1[i] + grad * grad;
      s1[i] = sum;
      p[i] = p[i] + c.neg_lr * grad / (std::sqrt(sum) + c.eps);
    } else {
      const float m = s1[i] * c.b1 + grad * c.one_minus_b1;
      const float v = s2[i] * c.b2 + c.one_minus_b2 * grad * grad;
      s1[i] = m;
      s2[i] = v;
      p[i] = p[i] + c.neg_lr * m / (std::sqrt(v) / c.sqrt_bc2 + c.eps);
    }
  }
}

template <int kind>
__attribute__((target("avx2"))) void update_avx2(float* p, const float* g, float* s1, float* s2, const Coefficients& c,
                                                 int64_t begin, int64_t end) {
  const __m256 wd = _mm256_set1_ps(c.wd), neg_lr = _mm256_set1_ps(c.neg_lr), eps = _mm256_set1_ps(c.eps);
  const __m256 b1 = _mm256_set1_ps(c.b1), omb1 = _mm256_set1_ps(c.one_minus_b1);
  const __m256 b2 = _mm256_set1_ps(c.b2), omb2 = _mm256_set1_ps(c.one_minus_b2);
  const __m256 sqrt_bc2 = _mm256_set1_ps(c.sqrt_bc2);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 w = _mm256_loadu_ps(p + i);
    __m256 grad = _mm256_loadu_ps(g + i);
    if (c.wd != 0) grad = _mm256_add_ps(grad, _mm256_mul_ps(wd, w));
    __m256 step;
    if constexpr (kind == 0) {
      step = _mm256_mul_ps(neg_lr, grad);
    } else if constexpr (kind == 1) {
      const __m256 sum = _mm256_add_ps(_mm256_loadu_ps(s1 + i), _mm256_mul_ps(grad, grad));
      _mm256_storeu_ps(s1 + i, sum);
      step = _mm256_div_ps(_mm256_mul_ps(neg_lr, grad), _mm256_add_ps(_mm256_sqrt_ps(sum), eps));
    } else {
      const __m256 m = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s1 + i), b1), _mm256_mul_ps(grad, omb1));
      const __m256 v =
          _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s2 + i), b2), _mm256_mul_ps(_mm256_mul_ps(omb2, grad), grad));
      _mm256_storeu_ps(s1 + i, m);
      _mm256_storeu_ps(s2 + i, v);
      step = _mm256_div_ps(_mm256_mul_ps(neg_lr, m), _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), sqrt_bc2), eps));
    }
    _mm256_storeu_ps(p + i, _mm256_add_ps(w, step));
  }
  update_scalar<kind>(p, g, s1, s2, c, i, end);
}

/// Counts a step in the state's "step" (a CPU int64 scalar) and returns
/// the new count: on the host, with no tensor operation (two per
/// parameter and step otherwise: add_ and item).
int64_t count_step(torch::Tensor& step) {
  TORCH_INTERNAL_ASSERT(step.is_cpu() && step.scalar_type() == torch::kLong && step.numel() == 1);
  return ++*step.data_ptr<int64_t>();
}

bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

template <int kind>
void update_fused(float* p, const float* g, float* s1, float* s2, const Coefficients& c, int64_t n) {
  // Elementwise: any split over threads gives the same values.
  at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
    if (cpu_has_avx2())
      update_avx2<kind>(p, g, s1, s2, c, begin, end);
    else
      update_scalar<kind>(p, g, s1, s2, c, begin, end);
  });
}

/// The fused loop's inputs: dense contiguous fp32 CPU tensors of one shape.
bool fusable(const torch::Tensor& p, const torch::Tensor& grad, std::initializer_list<torch::Tensor> state) {
  auto ok = [&](const torch::Tensor& t) {
    return t.device().is_cpu() && t.layout() == torch::kStrided && t.scalar_type() == torch::kFloat &&
           t.is_contiguous() && t.sizes() == p.sizes();
  };
  if (!ok(p) || !ok(grad)) return false;
  for (const auto& t : state)
    if (!ok(t)) return false;
  return true;
}

}  // namespace

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
  std::vector<size_t> per_op;  // the parameters the fused loop does not take
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    const torch::Tensor grad = p.grad().is_sparse() ? p.grad().to_dense() : p.grad();
    if (tensor_ops_ || !fused(p, grad, states_[i])) {
      per_op.push_back(i);
      continue;
    }
    update(p, grad, states_[i]);
  }
  if (per_op.size() > 1 && same_step(per_op)) return update_with_foreach_ops(per_op);
  for (size_t i : per_op) {
    torch::Tensor& p = params_[i].second;
    update_with_tensor_ops(p, p.grad().is_sparse() ? p.grad().to_dense() : p.grad(), states_[i]);
  }
}

bool DenseOptimizer::fused(const torch::Tensor& p, const torch::Tensor& grad, const State& s) const {
  const std::string& type = options_.type();
  return type == "sgd"       ? fusable(p, grad, {})
         : type == "adagrad" ? fusable(p, grad, {s.sum})
                             : fusable(p, grad, {s.exp_avg, s.exp_avg_sq});
}

bool DenseOptimizer::same_step(const std::vector<size_t>& which) const {
  if (options_.type() == "sgd") return true;
  auto step_of = [&](size_t i) { return *states_[i].step.data_ptr<int64_t>(); };  // CPU int64 scalars
  for (size_t i : which)
    if (step_of(i) != step_of(which[0])) return false;
  return true;
}

// update_with_tensor_ops over all of `which` at once: the same operations
// in the same order, as torch's _foreach_ ops (issue 19: on a GPU each is
// one multi-tensor kernel launch, not one per parameter; on the CPU they
// run the per-tensor kernels, so the values are the same bytes). Their
// steps are equal (same_step).
void DenseOptimizer::update_with_foreach_ops(const std::vector<size_t>& which) {
  const OptimizerOptions& o = options_;
  std::vector<torch::Tensor> params, grads;
  for (size_t i : which) {
    const torch::Tensor& p = params_[i].second;
    params.push_back(p);
    grads.push_back(p.grad().is_sparse() ? p.grad().to_dense() : p.grad());
  }
  if (o.weight_decay() != 0) grads = at::_foreach_add(grads, params, at::Scalar(o.weight_decay()));
  if (o.type() == "sgd") return at::_foreach_add_(params, grads, at::Scalar(-o.lr()));
  double t = 0;
  for (size_t i : which) t = static_cast<double>(count_step(states_[i].step));
  std::vector<torch::Tensor> first, second;
  for (size_t i : which) {
    first.push_back(o.type() == "adagrad" ? states_[i].sum : states_[i].exp_avg);
    if (o.type() == "adam") second.push_back(states_[i].exp_avg_sq);
  }
  if (o.type() == "adagrad") {
    at::_foreach_addcmul_(first, grads, grads, at::Scalar(1.0));
    std::vector<torch::Tensor> denom = at::_foreach_sqrt(first);
    at::_foreach_add_(denom, at::Scalar(o.eps()));
    return at::_foreach_addcdiv_(params, grads, denom, at::Scalar(-o.lr()));
  }
  // adam
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  at::_foreach_mul_(first, at::Scalar(o.beta1()));
  at::_foreach_add_(first, grads, at::Scalar(1 - o.beta1()));
  at::_foreach_mul_(second, at::Scalar(o.beta2()));
  at::_foreach_addcmul_(second, grads, grads, at::Scalar(1 - o.beta2()));
  std::vector<torch::Tensor> denom = at::_foreach_sqrt(second);
  at::_foreach_div_(denom, at::Scalar(std::sqrt(bias_correction2)));
  at::_foreach_add_(denom, at::Scalar(o.eps()));
  at::_foreach_addcdiv_(params, first, denom, at::Scalar(-o.lr() / bias_correction1));
}

void DenseOptimizer::update(torch::Tensor& p, const torch::Tensor& grad, State& s) const {
  const OptimizerOptions& o = options_;
  const int kind = o.type() == "sgd" ? 0 : o.type() == "adagrad" ? 1 : 2;
  Coefficients c{};
  c.wd = static_cast<float>(o.weight_decay());
  c.eps = static_cast<float>(o.eps());
  float* pp = p.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  const int64_t n = p.numel();
  if (kind == 0) {
    c.neg_lr = static_cast<float>(-o.lr());
    return update_fused<0>(pp, gp, nullptr, nullptr, c, n);
  }
  const auto t = static_cast<double>(count_step(s.step));
  if (kind == 1) {
    c.neg_lr = static_cast<float>(-o.lr());
    return update_fused<1>(pp, gp, s.sum.data_ptr<float>(), nullptr, c, n);
  }
  const double bias_correction1 = 1 - std::pow(o.beta1(), t);
  const double bias_correction2 = 1 - std::pow(o.beta2(), t);
  c.neg_lr = static_cast<float>(-o.lr() / bias_correction1);
  c.b1 = static_cast<float>(o.beta1());
  c.one_minus_b1 = static_cast<float>(1 - o.beta1());
  c.b2 = static_cast<float>(o.beta2());
  c.one_minus_b2 = static_cast<float>(1 - o.beta2());
  c.sqrt_bc2 = static_cast<float>(std::sqrt(bias_correction2));
  update_fused<2>(pp, gp, s.exp_avg.data_ptr<float>(), s.exp_avg_sq.data_ptr<float>(), c, n);
}

void DenseOptimizer::update_with_tensor_ops(torch::Tensor& p, const torch::Tensor& grad_in, State& s) const {
  const OptimizerOptions& o = options_;
  torch::Tensor grad = o.weight_decay() != 0 ? grad_in.add(p, o.weight_decay()) : grad_in;
  if (o.type() == "sgd") {
    p.add_(grad, -o.lr());
    return;
  }
  const auto t = static_cast<double>(count_step(s.step));
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
