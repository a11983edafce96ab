#pragma once
// state_dict in PyTorch's sense for C++ modules: every defined parameter and
// buffer under its dotted path, in PyTorch's order (a module's own
// parameters, then its own buffers, then each child in registration order).
#include <torch/nn/module.h>

#include <functional>
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

/// A tensor of a dict being written whose values are made only when its
/// record is written: its key, shape and dtype are known up front (the
/// pickle, which names them all, comes first, as torch.save writes it), and
/// `make` is called once, in the dict's order, while the tensors before it
/// are already written and freed. A distributed checkpoint gathers each
/// tensor from the ranks in `make` (a collective: every rank calls the makes
/// in the same order, rank 0 writing, the others dropping what theirs
/// return), so rank 0 never holds more than one gathered tensor. Written by
/// io::write_tensors.
struct DeferredTensor {
  std::string key;
  std::vector<int64_t> sizes;
  torch::Dtype dtype = torch::kFloat;
  std::function<torch::Tensor()> make;
};
using DeferredStateDict = std::vector<DeferredTensor>;

/// Entries that hand out tensors already made (sizes and dtype taken from them).
DeferredStateDict deferred(const StateDict& tensors);

/// Looks a key up in a StateDict; nullptr when absent.
const torch::Tensor* find_tensor(const StateDict& dict, const std::string& key);

}  // namespace recmod
