#pragma once
// Perceptron and MLP (torchrec/modules/mlp.py).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <optional>
#include <vector>

#include "recmod/modules/activation.h"
#include "recmod/modules/lazy.h"

namespace recmod {

/// Options for Perceptron. in_size std::nullopt: learned from the first
/// batch (lazy). Example: Perceptron p(PerceptronOptions(40, 16).activation(activation_by_name("sigmoid")));
struct PerceptronOptions {
  PerceptronOptions(std::optional<int64_t> in_size, int64_t out_size) : in_size_(in_size), out_size_(out_size) {}
  TORCH_ARG(std::optional<int64_t>, in_size);  // I; input is (*, I)
  TORCH_ARG(int64_t, out_size);                // O
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(Activation, activation) = Activation();  // torch.relu
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  TORCH_ARG(std::optional<torch::Dtype>, dtype) = std::nullopt;
  /// The dtype of x W^T + b while autograd records (training steps):
  /// kBFloat16 multiplies bf16 copies of the input and of the fp32 weights
  /// (master weights stay fp32; their gradients arrive in fp32), and the
  /// output returns to the input's dtype. nullopt: the parameters' dtype.
  /// Without autograd (eval, predictions) the parameters' dtype is used.
  TORCH_ARG(std::optional<torch::Dtype>, compute_dtype) = std::nullopt;
};

/// y = activation(x W^T + b): (*, I) -> (*, O).
/// Keys as TorchRec: _linear.weight (O, I), _linear.bias (O), and
/// _activation_fn.* when the activation is a module.
class PerceptronImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit PerceptronImpl(PerceptronOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return !linear_.is_empty(); }
  void initialize_parameters(int64_t in_size, const torch::Tensor& like) override;
  std::string in_size_key() const override { return "_linear.weight"; }
  int64_t in_size_dim() const override { return 1; }
  /// forward() that may return the compute dtype (an MLP converts back once, after its last layer).
  torch::Tensor forward_in_compute_dtype(const torch::Tensor& input);
  /// The linear layer; empty until the input size is known.
  torch::nn::Linear& linear() { return linear_; }

  PerceptronOptions options;

 private:
  void create_layers(int64_t in_size, const torch::TensorOptions& tensor_options);

  torch::nn::Linear linear_{nullptr};
};
TORCH_MODULE(Perceptron);

/// Options for MLP. Example:
/// MLP mlp(MLPOptions(40, {16, 8}).activation(mlp_activation("swish_layernorm")));
struct MLPOptions {
  MLPOptions(std::optional<int64_t> in_size, std::vector<int64_t> layer_sizes)
      : in_size_(in_size), layer_sizes_(std::move(layer_sizes)) {}
  TORCH_ARG(std::optional<int64_t>, in_size);  // input is (*, in_size); nullopt: lazy
  TORCH_ARG(std::vector<int64_t>, layer_sizes);  // out_size of each Perceptron
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(ActivationFactory, activation) = same_activation(Activation());  // torch.relu
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  TORCH_ARG(std::optional<torch::Dtype>, dtype) = std::nullopt;
  /// Each layer's PerceptronOptions::compute_dtype; between layers the
  /// activations stay in it, the output is in the input's dtype.
  TORCH_ARG(std::optional<torch::Dtype>, compute_dtype) = std::nullopt;
  /// In [0, 1): in training mode, torch::dropout after each layer's
  /// activation (an extension: TorchRec's MLP has none); off in eval mode.
  TORCH_ARG(double, dropout) = 0.0;
};

/// A stack of Perceptrons, each with the activation: (*, in_size) ->
/// (*, layer_sizes.back()). Keys as TorchRec: _mlp.<i>._linear.weight, ...
/// With dropout p > 0, training mode zeroes each activation with
/// probability p and scales the rest by 1 / (1 - p), drawing from torch's
/// default generator (seeded by the trainer, saved in its checkpoints); no
/// parameter or key is added.
class MLPImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit MLPImpl(MLPOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return layers_.front()->is_initialized(); }
  void initialize_parameters(int64_t in_size, const torch::Tensor& like) override;
  std::string in_size_key() const override { return "_mlp.0._linear.weight"; }
  int64_t in_size_dim() const override { return 1; }
  const std::vector<Perceptron>& layers() const { return layers_; }

  MLPOptions options;

 private:
  torch::nn::Sequential mlp_;
  std::vector<Perceptron> layers_;
};
TORCH_MODULE(MLP);

/// Sets compute_dtype on every Perceptron and MLP under `root` (itself
/// included): training.dense_precision. Returns how many Perceptrons.
int64_t set_dense_compute_dtype(torch::nn::Module& root, std::optional<torch::Dtype> compute_dtype);

}  // namespace recmod
