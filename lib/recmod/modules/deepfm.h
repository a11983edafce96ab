#pragma once
// DeepFM and FactorizationMachine (torchrec/modules/deepfm.py). Both take a
// list of embeddings (B, N_i, D_i) with one batch size B and flatten each to
// (B, N_i * D_i), concatenated along dim 1 into (B, F).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/types.h>

#include <vector>

namespace recmod {

/// Each (B, N_i, D_i) flattened to (B, N_i * D_i), concatenated: (B, sum N_i D_i).
/// `who` names the module in errors (empty list, mixed batch sizes).
torch::Tensor flatten_embeddings(const std::vector<torch::Tensor>& embeddings, const char* who);

/// The deep part of DeepFM: y = dense_module(concat of flattened embeddings).
/// dense_module is any module with forward(const Tensor&) -> Tensor whose
/// in_features is sum N_i D_i; it is registered as `dense_module` (so a
/// torch::nn::Linear gives keys dense_module.weight / dense_module.bias).
class DeepFMImpl : public torch::nn::Module {
 public:
  explicit DeepFMImpl(torch::nn::AnyModule dense_module);
  template <typename ModuleHolder>
  explicit DeepFMImpl(ModuleHolder dense_module) : DeepFMImpl(torch::nn::AnyModule(std::move(dense_module))) {}
  torch::Tensor forward(const std::vector<torch::Tensor>& embeddings);

 private:
  torch::nn::AnyModule dense_module_;
};
TORCH_MODULE(DeepFM);

/// Second-order interactions as TorchRec computes them: with x = the
/// concatenated flattened embeddings (B, F),
///   y = 0.5 * ((sum_f x_f)^2 - sum_f x_f^2),  shape (B, 1).
/// (The sums run over all F elements, not per embedding dimension.) No parameters.
class FactorizationMachineImpl : public torch::nn::Module {
 public:
  FactorizationMachineImpl() = default;
  torch::Tensor forward(const std::vector<torch::Tensor>& embeddings);
};
TORCH_MODULE(FactorizationMachine);

}  // namespace recmod
