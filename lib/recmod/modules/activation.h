#pragma once
// Activations as TorchRec's dense modules take them (torchrec/modules/activation.py
// and the `activation` argument of Perceptron / MLP / LowRankMixtureCrossNet).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace recmod {

/// Options for SwishLayerNorm. input_dims are the trailing dimensions that
/// are normalized (an int in TorchRec becomes a one-element list).
struct SwishLayerNormOptions {
  /* implicit */ SwishLayerNormOptions(std::vector<int64_t> input_dims) : input_dims_(std::move(input_dims)) {}
  /* implicit */ SwishLayerNormOptions(int64_t input_dim) : input_dims_({input_dim}) {}
  TORCH_ARG(std::vector<int64_t>, input_dims);
};

/// y = x * sigmoid(LayerNorm(x)), LayerNorm over the trailing input_dims
/// (eps 1e-5, elementwise affine). Input (*, input_dims...), output the same.
/// TorchRec keeps the norm in a Sequential: keys norm.0.weight, norm.0.bias.
class SwishLayerNormImpl : public torch::nn::Module {
 public:
  explicit SwishLayerNormImpl(SwishLayerNormOptions options);
  torch::Tensor forward(const torch::Tensor& input);

  SwishLayerNormOptions options;

 private:
  torch::nn::Sequential norm_;
};
TORCH_MODULE(SwishLayerNorm);

/// An activation as TorchRec accepts it: either a plain tensor function
/// (torch.relu, torch.sigmoid) or a module (e.g. SwishLayerNorm). A module is
/// registered by its owner under the owner's attribute name (Perceptron's
/// `_activation_fn`), so its parameters appear in state_dict as in TorchRec;
/// a function registers nothing.
class Activation {
 public:
  using Fn = std::function<torch::Tensor(const torch::Tensor&)>;
  /// torch.relu.
  Activation();
  static Activation function(Fn fn, std::string name);
  /// `module` must have forward(const Tensor&) -> Tensor.
  static Activation module(torch::nn::AnyModule module);
  template <typename ModuleHolder>
  static Activation module(ModuleHolder holder) {
    return module(torch::nn::AnyModule(std::move(holder)));
  }

  torch::Tensor operator()(const torch::Tensor& input) const;
  bool is_module() const { return !module_.is_empty(); }
  /// The module to register; nullptr for a function activation.
  std::shared_ptr<torch::nn::Module> module_ptr() const;
  /// "relu", "sigmoid", or the module's name.
  const std::string& name() const { return name_; }

 private:
  Fn fn_;
  mutable torch::nn::AnyModule module_;  // AnyModule::forward is non-const
  std::string name_;
};

/// "relu" -> torch.relu, "sigmoid" -> torch.sigmoid; anything else throws
/// InputError listing the valid names.
Activation activation_by_name(const std::string& name);

/// What MLP accepts as `activation`: called once per layer with that layer's
/// out_size. A factory that returns a fresh module each call gives every
/// layer its own parameters (TorchRec's Callable[[], nn.Module]); one that
/// returns the same module shares it.
using ActivationFactory = std::function<Activation(int64_t out_size)>;

/// The same activation for every layer.
ActivationFactory same_activation(Activation activation);
/// TorchRec's MLP activation strings: "relu", "sigmoid", or
/// "swish_layernorm" (a fresh SwishLayerNorm(out_size) per layer); others
/// throw InputError listing the valid names.
ActivationFactory mlp_activation(const std::string& name);

}  // namespace recmod
