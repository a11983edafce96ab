#pragma once
// Threshold filters of torchrec.modules.mc_modules: given the counts of the
// unique ids seen since the last eviction, say which ids may enter the
// managed-collision table. An MCHEvictionPolicy may carry one.
#include <torch/types.h>

#include <functional>
#include <string>

namespace recmod {

/// mask[i] = id_counts[i] > threshold; threshold is a 0-d float tensor.
struct ThresholdFilterResult {
  torch::Tensor mask;
  torch::Tensor threshold;
};

using ThresholdFilter = std::function<ThresholdFilterResult(const torch::Tensor& id_counts)>;

/// threshold = mean(float(id_counts)); ids with a count strictly above it pass.
ThresholdFilterResult average_threshold_filter(const torch::Tensor& id_counts);

/// threshold = sum(id_counts) / numel(id_counts) * threshold_skew_multiplier
/// (computed as TorchRec does: (1 / n * m) * sum, in float32); ids with a
/// count strictly above it pass. Throws InputError for an empty id_counts
/// (TorchRec divides by zero there).
ThresholdFilterResult dynamic_threshold_filter(const torch::Tensor& id_counts,
                                               double threshold_skew_multiplier = 10.0);

}  // namespace recmod
