#pragma once
// state_dict in PyTorch's sense for C++ modules: every defined parameter and
// buffer under its dotted path, in PyTorch's order (a module's own
// parameters, then its own buffers, then each child in registration order).
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

namespace recmod {

using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

StateDict state_dict(const torch::nn::Module& module);

/// Copies `source` into the module's parameters and buffers, by key.
/// Strict: a key missing from `source`, a key the module does not have, a
/// shape or dtype mismatch all throw CheckpointError naming the key and
/// `origin` (a file name, or a description). Values move to the device of
/// the module's tensor. Floating-point values must be finite: a NaN or inf
/// throws CheckpointError naming the key and the first bad index (one
/// isfinite().all() per tensor; locating runs only on failure).
void load_state_dict(torch::nn::Module& module, const StateDict& source, const std::string& origin);

/// Throws CheckpointError "<origin>: key '<key>' has a non-finite value
/// (nan at index [i, j]; N of M values are nan or inf) ..." unless every
/// value of a floating-point tensor is finite. Other dtypes always pass.
void check_finite(const torch::Tensor& value, const std::string& key, const std::string& origin);

/// Looks a key up in a StateDict; nullptr when absent.
const torch::Tensor* find_tensor(const StateDict& dict, const std::string& key);

}  // namespace recmod
