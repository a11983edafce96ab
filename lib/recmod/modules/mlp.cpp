#include "recmod/modules/mlp.h"

#include <torch/torch.h>

namespace recmod {

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
  torch::Tensor out = options.activation()(linear_->forward(input));
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
