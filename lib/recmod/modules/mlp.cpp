#include "recmod/modules/mlp.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>

namespace recmod {

namespace {

/// y[r, :] = act(y[r, :] + b) for every row, in one pass over y (the GEMM
/// wrote y = x W^T with beta = 0).
void bias_activation_rows(float* y, const float* b, int64_t rows, int64_t cols, bool relu) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* __restrict yr = y + r * cols;
      if (relu)
        for (int64_t j = 0; j < cols; ++j) yr[j] = std::max(yr[j] + b[j], 0.f);
      else
        for (int64_t j = 0; j < cols; ++j) yr[j] += b[j];
    }
  });
}

/// x W^T + b, then the activation, on a fresh output; nothing for autograd.
torch::Tensor linear_activation_forward(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                        bool relu) {
  torch::Tensor y = torch::mm(x, w.t());
  bias_activation_rows(y.data_ptr<float>(), b.data_ptr<float>(), y.size(0), y.size(1), relu);
  return y;
}

/// Linear + bias + (ReLU or nothing) with its own backward: the forward is
/// one GEMM and one pass that adds the bias and applies the activation; the
/// backward makes the activation's mask and the bias gradient in one pass
/// over the output gradient, then the two GEMMs. The same values as
/// relu(linear(x)) under autograd within float rounding (the bias gradient
/// is summed in per-thread row blocks).
class LinearActivationFunction : public torch::autograd::Function<LinearActivationFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b, bool relu) {
    torch::Tensor y = linear_activation_forward(x, w, b, relu);
    ctx->save_for_backward({x, w, y});
    ctx->saved_data["relu"] = relu;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &y = saved[2];
    const bool relu = ctx->saved_data["relu"].toBool();
    const torch::Tensor g = grads[0].contiguous();
    const int64_t rows = g.size(0), cols = g.size(1);
    torch::Tensor gp = relu ? torch::empty_like(g) : g;
    // Bias gradient: column sums in row blocks, one block per thread.
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 64));
    torch::Tensor partial = torch::zeros({blocks, cols}, g.options());
    const float* gin = g.data_ptr<float>();
    const float* yv = y.data_ptr<float>();
    float* gout = gp.data_ptr<float>();
    float* part = partial.data_ptr<float>();
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        float* __restrict sum = part + blk * cols;
        for (int64_t r = rows * blk / blocks; r < rows * (blk + 1) / blocks; ++r) {
          const float* __restrict gr = gin + r * cols;
          if (relu) {
            const float* __restrict yr = yv + r * cols;
            float* __restrict outr = gout + r * cols;
            for (int64_t j = 0; j < cols; ++j) {
              const float v = yr[j] > 0.f ? gr[j] : 0.f;
              outr[j] = v;
              sum[j] += v;
            }
          } else {
            for (int64_t j = 0; j < cols; ++j) sum[j] += gr[j];
          }
        }
      }
    });
    torch::Tensor gb = blocks == 1 ? partial[0] : partial.sum(0);
    torch::Tensor gx = ctx->needs_input_grad(0) ? torch::mm(gp, w) : torch::Tensor();
    torch::Tensor gw = torch::mm(gp.t(), x);
    return {gx, gw, gb, torch::Tensor()};
  }
};

}  // namespace

PerceptronImpl::PerceptronImpl(PerceptronOptions options_) : options(std::move(options_)) {
  TORCH_CHECK(options.out_size() > 0, "Perceptron: out_size must be positive, got ", options.out_size());
  if (options.in_size()) {
    TORCH_CHECK(*options.in_size() > 0, "Perceptron: in_size must be positive, got ", *options.in_size());
    auto tensor_options = torch::TensorOptions();
    if (options.device()) tensor_options = tensor_options.device(*options.device());
    if (options.dtype()) tensor_options = tensor_options.dtype(*options.dtype());
    create_layers(*options.in_size(), tensor_options);
  }
}

void PerceptronImpl::create_layers(int64_t in_size, const torch::TensorOptions& tensor_options) {
  options.in_size(in_size);
  linear_ = register_module(
      "_linear", torch::nn::Linear(torch::nn::LinearOptions(in_size, options.out_size()).bias(options.bias())));
  // Registered after _linear (also when lazy) so that state_dict keeps TorchRec's key order.
  if (options.activation().is_module()) register_module("_activation_fn", options.activation().module_ptr());
  const bool moved = tensor_options.has_device() || tensor_options.has_dtype();
  if (moved) to(tensor_options.device(), tensor_options.dtype().toScalarType());
}

void PerceptronImpl::initialize_parameters(int64_t in_size, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "Perceptron: already initialized with in_size ", *options.in_size());
  TORCH_CHECK(in_size > 0, "Perceptron: in_size must be positive, got ", in_size);
  create_layers(in_size, lazy_tensor_options(like, options.device(), options.dtype()));
}

torch::Tensor PerceptronImpl::forward(const torch::Tensor& input) {
  if (!is_initialized()) initialize_parameters(infer_in_size(input, "Perceptron"), input);
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) == *options.in_size(), "Perceptron: expected input of shape (*, ",
              *options.in_size(), "), got ", input.sizes());
  const auto& act = options.activation();
  const bool relu = !act.is_module() && act.name() == "relu";
  const bool fused = relu && input.dim() == 2 && linear_->bias.defined() &&
                     input.device().is_cpu() && input.scalar_type() == torch::kFloat &&
                     linear_->weight.scalar_type() == torch::kFloat;
  torch::Tensor out;
  if (!fused) {
    out = act(linear_->forward(input));
  } else if (torch::autograd::GradMode::is_enabled() &&
             (input.requires_grad() || linear_->weight.requires_grad() || linear_->bias.requires_grad())) {
    out = LinearActivationFunction::apply(input.contiguous(), linear_->weight, linear_->bias, relu);
  } else {  // eval / predictions: the kernel alone
    out = linear_activation_forward(input.contiguous(), linear_->weight, linear_->bias, relu);
  }
  finish_forward(*this);
  return out;
}

MLPImpl::MLPImpl(MLPOptions options_) : options(std::move(options_)) {
  const auto& sizes = options.layer_sizes();
  TORCH_CHECK(!sizes.empty(), "MLP: layer_sizes must not be empty");
  TORCH_CHECK(options.activation(), "MLP: empty activation factory");
  TORCH_CHECK(options.dropout() >= 0 && options.dropout() < 1, "MLP: dropout must be in [0, 1), got ",
              options.dropout());
  mlp_ = register_module("_mlp", torch::nn::Sequential());
  std::optional<int64_t> in_size = options.in_size();
  for (int64_t out_size : sizes) {
    TORCH_CHECK(out_size > 0, "MLP: layer_sizes must be positive, got ", c10::IntArrayRef(sizes));
    Perceptron layer(PerceptronOptions(in_size, out_size)
                         .bias(options.bias())
                         .activation(options.activation()(out_size))
                         .device(options.device())
                         .dtype(options.dtype()));
    mlp_->push_back(layer);
    layers_.push_back(layer);
    in_size = out_size;
  }
}

void MLPImpl::initialize_parameters(int64_t in_size, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "MLP: already initialized with in_size ", *options.in_size());
  // The first layer is created on `like`'s device (or the configured one);
  // the layers sized at construction follow it there.
  const auto tensor_options = lazy_tensor_options(like, options.device(), options.dtype());
  to(tensor_options.device(), tensor_options.dtype().toScalarType());
  layers_.front()->initialize_parameters(in_size, like);
  options.in_size(in_size);
}

torch::Tensor MLPImpl::forward(const torch::Tensor& input) {
  if (!is_initialized()) initialize_parameters(infer_in_size(input, "MLP"), input);
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) == *options.in_size(), "MLP: expected input of shape (*, ",
              *options.in_size(), "), got ", input.sizes());
  torch::Tensor x = input;
  const bool drop = options.dropout() > 0 && is_training();
  for (auto& layer : layers_) {
    x = layer->forward(x);
    if (drop) x = torch::dropout(x, options.dropout(), /*train=*/true);
  }
  finish_forward(*this);
  return x;
}

}  // namespace recmod
