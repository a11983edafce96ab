#pragma once
// The cross networks of DCN / DCN-v2 (torchrec/modules/crossnet.py). Input
// and output are (B, N). in_features std::nullopt: N is learned from the
// first batch (lazy). Formulas are TorchRec v0.6's code (where its docstrings
// differ, the code is what the golden cases pin down).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/parameterlist.h>
#include <torch/types.h>

#include <optional>

#include "recmod/modules/activation.h"
#include "recmod/modules/lazy.h"

namespace recmod {

/// Options for CrossNet. Example: CrossNet net(CrossNetOptions(64, 3));
struct CrossNetOptions {
  CrossNetOptions(std::optional<int64_t> in_features, int64_t num_layers)
      : in_features_(in_features), num_layers_(num_layers) {}
  TORCH_ARG(std::optional<int64_t>, in_features);  // N
  TORCH_ARG(int64_t, num_layers);                  // L >= 0
};

/// x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, W_l (N, N), b_l (N, 1).
/// Keys: kernels.<l> (xavier_normal init), bias.<l> (zeros).
class CrossNetImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit CrossNetImpl(CrossNetOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return options.in_features().has_value(); }

  CrossNetOptions options;

 private:
  void create_parameters(int64_t in_features, const torch::TensorOptions& tensor_options);
  torch::nn::ParameterList kernels_, bias_;
};
TORCH_MODULE(CrossNet);

/// Options for LowRankCrossNet. Example: LowRankCrossNet net(LowRankCrossNetOptions(64, 3).low_rank(16));
struct LowRankCrossNetOptions {
  LowRankCrossNetOptions(std::optional<int64_t> in_features, int64_t num_layers)
      : in_features_(in_features), num_layers_(num_layers) {}
  TORCH_ARG(std::optional<int64_t>, in_features);  // N
  TORCH_ARG(int64_t, num_layers);
  TORCH_ARG(int64_t, low_rank) = 1;  // r >= 1
};

/// x_{l+1} = x_0 * (W_l (V_l x_l) + b_l) + x_l, W_l (N, r), V_l (r, N), b_l (N).
/// Keys: W_kernels.<l>, V_kernels.<l> (xavier_normal), bias.<l> (zeros).
class LowRankCrossNetImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit LowRankCrossNetImpl(LowRankCrossNetOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return options.in_features().has_value(); }

  LowRankCrossNetOptions options;

 private:
  void create_parameters(int64_t in_features, const torch::TensorOptions& tensor_options);
  torch::nn::ParameterList w_kernels_, v_kernels_, bias_;
};
TORCH_MODULE(LowRankCrossNet);

/// Options for VectorCrossNet. Example: VectorCrossNet net(VectorCrossNetOptions(64, 3));
struct VectorCrossNetOptions {
  VectorCrossNetOptions(std::optional<int64_t> in_features, int64_t num_layers)
      : in_features_(in_features), num_layers_(num_layers) {}
  TORCH_ARG(std::optional<int64_t>, in_features);  // N
  TORCH_ARG(int64_t, num_layers);
};

/// x_{l+1} = x_0 (w_l . x_l) + b_l + x_l, w_l (N, 1), b_l (N, 1). (TorchRec's
/// code adds b_l outside the product with x_0, unlike its docstring.)
/// Keys: kernels.<l> (xavier_normal), bias.<l> (zeros).
class VectorCrossNetImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit VectorCrossNetImpl(VectorCrossNetOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return options.in_features().has_value(); }

  VectorCrossNetOptions options;

 private:
  void create_parameters(int64_t in_features, const torch::TensorOptions& tensor_options);
  torch::nn::ParameterList kernels_, bias_;
};
TORCH_MODULE(VectorCrossNet);

/// Options for LowRankMixtureCrossNet. Example:
/// LowRankMixtureCrossNet net(LowRankMixtureCrossNetOptions(64, 3).num_experts(4).low_rank(8));
struct LowRankMixtureCrossNetOptions {
  LowRankMixtureCrossNetOptions(std::optional<int64_t> in_features, int64_t num_layers)
      : in_features_(in_features), num_layers_(num_layers) {}
  TORCH_ARG(std::optional<int64_t>, in_features);  // N
  TORCH_ARG(int64_t, num_layers);
  TORCH_ARG(int64_t, num_experts) = 1;  // K >= 1; 1 skips the gating
  TORCH_ARG(int64_t, low_rank) = 1;     // r >= 1
  TORCH_ARG(Activation, activation) = Activation();  // g, torch.relu
};

/// DCN-v2 with a mixture of K low-rank experts. Per layer l and expert i:
///   e_i = x_0 * (U_li g(C_li g(V_li x_l)) + b_l),  U (N, r), C (r, r), V (r, N), b (N, 1)
///   x_{l+1} = sum_i softmax_i(G_i x_l) e_i + x_l   (K > 1; G_i = gates.<i>, Linear(N, 1) no bias)
///   x_{l+1} = e_0 + x_l                            (K = 1)
/// Keys: U_kernels.<l> (K, N, r), V_kernels.<l> (K, r, N), bias.<l>,
/// gates.<i>.weight (K > 1), C_kernels.<l> (K, r, r), and _activation.* for a module activation.
class LowRankMixtureCrossNetImpl : public torch::nn::Module, public LazyModule {
 public:
  explicit LowRankMixtureCrossNetImpl(LowRankMixtureCrossNetOptions options);
  torch::Tensor forward(const torch::Tensor& input);
  bool is_initialized() const override { return options.in_features().has_value(); }

  LowRankMixtureCrossNetOptions options;

 private:
  void create_parameters(int64_t in_features, const torch::TensorOptions& tensor_options);
  torch::nn::ParameterList u_kernels_, v_kernels_, bias_, c_kernels_;
  torch::nn::ModuleList gates_{nullptr};
};
TORCH_MODULE(LowRankMixtureCrossNet);

}  // namespace recmod
