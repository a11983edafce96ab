#pragma once
// Helpers of torchrec.modules.utils (v0.6) that the embedding modules and
// graph building need.
#include <torch/types.h>
#include <torch/utils.h>

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

/// Width of an EmbeddingBagCollection's output: sum over tables of
/// embedding_dim * number of features (a table without feature names has one).
int64_t pooled_embedding_dim(const std::vector<EmbeddingBagConfig>& tables);

/// TorchRec's get_module_output_dimension: the last dimension of
/// module(zeros(1, in_features)), computed without gradients.
template <typename Holder>
int64_t get_module_output_dimension(Holder& module, int64_t in_features) {
  torch::NoGradGuard no_grad;
  return module->forward(torch::zeros({1, in_features})).size(-1);
}

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
