#include "recmod/modules/activation.h"

#include <torch/torch.h>

#include "recmod/common/check.h"
#include "recmod/common/errors.h"

namespace recmod {

SwishLayerNormImpl::SwishLayerNormImpl(SwishLayerNormOptions options_) : options(std::move(options_)) {
  RECMOD_CHECK_INPUT(!options.input_dims().empty(), "SwishLayerNorm: input_dims must not be empty");
  for (int64_t d : options.input_dims())
    RECMOD_CHECK_INPUT(d > 0, "SwishLayerNorm: input_dims must be positive, got ", options.input_dims());
  norm_ = register_module("norm", torch::nn::Sequential(torch::nn::LayerNorm(
                                      torch::nn::LayerNormOptions(options.input_dims()).eps(1e-5))));
}

torch::Tensor SwishLayerNormImpl::forward(const torch::Tensor& input) {
  const auto& dims = options.input_dims();
  const int64_t n = static_cast<int64_t>(dims.size());
  RECMOD_CHECK_INPUT(input.dim() >= n && input.sizes().slice(input.dim() - n).equals(dims),
                     "SwishLayerNorm: expected input of shape (*, ", c10::IntArrayRef(dims), "), got ", input.sizes());
  return input * torch::sigmoid(norm_->forward(input));
}

Activation::Activation() : fn_([](const torch::Tensor& x) { return torch::relu(x); }), name_("relu") {}

Activation Activation::function(Fn fn, std::string name) {
  TORCH_CHECK(fn, "Activation: empty function '", name, "'");
  Activation a;
  a.fn_ = std::move(fn);
  a.name_ = std::move(name);
  return a;
}

Activation Activation::module(torch::nn::AnyModule module) {
  TORCH_CHECK(!module.is_empty(), "Activation: empty module");
  Activation a;
  a.fn_ = nullptr;
  a.name_ = module.ptr()->name();
  a.module_ = std::move(module);
  return a;
}

torch::Tensor Activation::operator()(const torch::Tensor& input) const {
  if (is_module()) return module_.forward<torch::Tensor>(input);
  return fn_(input);
}

std::shared_ptr<torch::nn::Module> Activation::module_ptr() const {
  return is_module() ? module_.ptr() : nullptr;
}

Activation activation_by_name(const std::string& name) {
  if (name == "relu") return Activation::function([](const torch::Tensor& x) { return torch::relu(x); }, name);
  if (name == "sigmoid") return Activation::function([](const torch::Tensor& x) { return torch::sigmoid(x); }, name);
  throw_input_error("unknown activation '", name, "'; expected one of ", join_names({"relu", "sigmoid"}));
}

ActivationFactory same_activation(Activation activation) {
  return [activation = std::move(activation)](int64_t /*out_size*/) { return activation; };
}

ActivationFactory mlp_activation(const std::string& name) {
  if (name == "swish_layernorm")
    return [](int64_t out_size) { return Activation::module(SwishLayerNorm(out_size)); };
  if (name != "relu" && name != "sigmoid")
    throw_input_error("MLP: unknown activation '", name, "'; expected one of ",
                      join_names({"relu", "sigmoid", "swish_layernorm"}));
  return same_activation(activation_by_name(name));
}

}  // namespace recmod
