#pragma once
// Helpers of torchrec.modules.utils (v0.6) that the embedding modules and
// graph building need.
#include <torch/types.h>
#include <torch/nn/modules/container/any.h>
#include <torch/utils.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod {

/// Sequence embeddings of `features` as Dict[str, JaggedTensor].
/// `embeddings` is (sum(length_per_key), D): the rows of key k follow those
/// of key k-1. embedding_names[k] names key k's output; keys that share a
/// name are concatenated along dim 1 (column-wise parts of one table).
/// Lengths are those of the first key of each name; with need_indices the
/// ids become the weights. Key order: first appearance in embedding_names.
JaggedTensorDict construct_jagged_tensors(const torch::Tensor& embeddings, const KeyedJaggedTensor& features,
                                          const std::vector<std::string>& embedding_names,
                                          bool need_indices = false);

/// TorchRec's further arguments of construct_jagged_tensors.
struct ConstructJaggedTensorsOptions {
  bool need_indices = false;
  /// Per output name, the order in which its keys' column blocks are
  /// concatenated: block i is the name's key permute[i] (column-wise shards
  /// that arrive out of order). A permutation of 0..(keys of the name - 1).
  std::map<std::string, std::vector<int64_t>> features_to_permute_indices;
  /// Lengths and ids come from these instead of `features` (a lookup ran on
  /// deduplicated features; with reverse_indices its rows are expanded back).
  std::optional<KeyedJaggedTensor> original_features;
  /// embeddings := embeddings[reverse_indices] before splitting.
  std::optional<torch::Tensor> reverse_indices;
};
JaggedTensorDict construct_jagged_tensors(const torch::Tensor& embeddings, const KeyedJaggedTensor& features,
                                          const std::vector<std::string>& embedding_names,
                                          const ConstructJaggedTensorsOptions& options);

/// Width of an EmbeddingBagCollection's output: sum over tables of
/// embedding_dim * number of features (a table without feature names has one).
int64_t pooled_embedding_dim(const std::vector<EmbeddingBagConfig>& tables);

/// TorchRec's get_module_output_dimension: the last dimension of
/// module(zeros(1, in_features)), computed without gradients, on the device
/// of the module's parameters (CPU when it has none).
template <typename Holder>
int64_t get_module_output_dimension(Holder& module, int64_t in_features) {
  torch::NoGradGuard no_grad;
  const auto params = module->parameters();
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  return module->forward(torch::zeros({1, in_features}, torch::TensorOptions().device(device))).size(-1);
}

/// TorchRec's check_module_output_dimension: whether the module's output
/// dimension for `in_features` inputs is `out_features`.
template <typename Holder>
bool check_module_output_dimension(Holder& module, int64_t in_features, int64_t out_features) {
  return get_module_output_dimension(module, in_features) == out_features;
}
/// The same for a list of modules (TorchRec's list / ModuleList case): true
/// when every module's is.
bool check_module_output_dimension(std::vector<torch::nn::AnyModule>& modules, int64_t in_features,
                                   int64_t out_features);

/// Throws InputError unless get_module_output_dimension(...) == expected.
template <typename Holder>
void check_module_output_dimension(Holder& module, int64_t in_features, int64_t expected, const std::string& what);

void throw_output_dimension_mismatch(const std::string& what, int64_t expected, int64_t actual);

template <typename Holder>
void check_module_output_dimension(Holder& module, int64_t in_features, int64_t expected, const std::string& what) {
  const int64_t actual = get_module_output_dimension(module, in_features);
  if (actual != expected) throw_output_dimension_mismatch(what, expected, actual);
}

}  // namespace recmod
