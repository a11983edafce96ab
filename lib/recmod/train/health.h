#pragma once
// Training health: stop a run at the first non-finite loss or gradient, and
// say where it appeared, instead of silently training on NaNs.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::train {

/// Training diverged (exit 1). The message names the step and, for a
/// gradient, the parameter's module path.
class TrainingHealthError : public Error {
 public:
  using Error::Error;
};

/// Throws TrainingHealthError ("step 12: loss is nan") when `loss` has a NaN or inf.
void check_loss_finite(const torch::Tensor& loss, int64_t step);

/// Throws TrainingHealthError naming the first parameter (in the given order)
/// whose gradient holds a NaN or inf, e.g. "step 12: gradient of
/// 'over_arch._mlp.0._linear.weight' has 3 non-finite values (first nan at
/// index [0, 4])". Dense and sparse COO gradients; parameters without a
/// gradient are skipped. One device synchronisation when all is well.
void check_gradients_finite(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, int64_t step);

/// Both checks with one device read (the loss's flag is read with the
/// gradients' flags): check_loss_finite's error when the loss is not finite,
/// else check_gradients_finite's. For a step whose backward updates nothing
/// (no fused embedding collection), so that checking the loss after backward
/// still stops before any update; saves a synchronisation per step on a GPU.
void check_step_finite(const torch::Tensor& loss, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
                       int64_t step);

}  // namespace recmod::train
