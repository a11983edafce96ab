#include "recmod/mc/threshold_filters.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {

ThresholdFilterResult average_threshold_filter(const torch::Tensor& id_counts) {
  torch::NoGradGuard no_grad;
  const torch::Tensor counts = id_counts.scalar_type() == torch::kFloat ? id_counts : id_counts.to(torch::kFloat);
  torch::Tensor threshold = counts.mean();
  return {counts > threshold, threshold};
}

ThresholdFilterResult dynamic_threshold_filter(const torch::Tensor& id_counts, double threshold_skew_multiplier) {
  torch::NoGradGuard no_grad;
  const int64_t num_ids = id_counts.numel();
  if (num_ids == 0) throw_input_error("dynamic_threshold_filter: expected at least one id count, got none");
  // Same operation order as TorchRec: a Python float mass times the
  // (integer) total, which type promotion turns into a float32 tensor.
  const double threshold_mass = 1.0 / static_cast<double>(num_ids) * threshold_skew_multiplier;
  torch::Tensor threshold = id_counts.sum() * threshold_mass;
  return {id_counts > threshold, threshold};
}

}  // namespace recmod
