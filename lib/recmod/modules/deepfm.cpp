#include "recmod/modules/deepfm.h"

#include <torch/torch.h>

#include "recmod/common/check.h"

namespace recmod {

torch::Tensor flatten_embeddings(const std::vector<torch::Tensor>& embeddings, const char* who) {
  RECMOD_CHECK_INPUT(!embeddings.empty(), who, ": expected at least one embedding of shape (B, N, D), got none");
  const int64_t batch = embeddings.front().dim() > 0 ? embeddings.front().size(0) : -1;
  std::vector<torch::Tensor> flat;
  flat.reserve(embeddings.size());
  for (size_t i = 0; i < embeddings.size(); ++i) {
    const torch::Tensor& e = embeddings[i];
    RECMOD_CHECK_INPUT(e.dim() >= 2 && e.size(0) == batch, who, ": expected embeddings[", i, "] of shape (", batch,
                       ", N, D), got ", e.sizes());
    flat.push_back(e.flatten(1));
  }
  return torch::cat(flat, 1);
}

DeepFMImpl::DeepFMImpl(torch::nn::AnyModule dense_module) : dense_module_(std::move(dense_module)) {
  TORCH_CHECK(!dense_module_.is_empty(), "DeepFM: dense_module is empty");
  register_module("dense_module", dense_module_.ptr());
}

torch::Tensor DeepFMImpl::forward(const std::vector<torch::Tensor>& embeddings) {
  return dense_module_.forward<torch::Tensor>(flatten_embeddings(embeddings, "DeepFM"));
}

torch::Tensor FactorizationMachineImpl::forward(const std::vector<torch::Tensor>& embeddings) {
  const torch::Tensor x = flatten_embeddings(embeddings, "FactorizationMachine");  // (B, F)
  const torch::Tensor sum = x.sum(1, /*keepdim=*/true);
  const torch::Tensor sum_of_squares = (x * x).sum(1, /*keepdim=*/true);
  return 0.5 * (sum * sum - sum_of_squares);  // (B, 1)
}

}  // namespace recmod
