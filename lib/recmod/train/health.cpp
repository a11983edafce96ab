#include "recmod/train/health.h"

#include <torch/torch.h>

#include <cmath>

namespace recmod::train {

namespace {

std::string kind_of(double v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

/// "3 non-finite values (first nan at index [2, 5])"; for a sparse COO
/// gradient the index is the parameter's (row id, column), not the values'.
std::string describe_non_finite(const torch::Tensor& grad) {
  const torch::Tensor coalesced = grad.is_sparse() ? grad.coalesce() : torch::Tensor();
  const torch::Tensor values = grad.is_sparse() ? coalesced.values() : grad;
  const torch::Tensor bad = ~torch::isfinite(values);
  const int64_t count = bad.sum().item<int64_t>();
  const torch::Tensor first = bad.nonzero()[0].cpu().contiguous();  // row-major first
  std::vector<int64_t> index(first.data_ptr<int64_t>(), first.data_ptr<int64_t>() + first.numel());
  torch::Tensor element = values;
  for (const int64_t i : index) element = element.select(0, i);
  const auto value = element.item<double>();
  if (grad.is_sparse()) index[0] = coalesced.indices().select(0, 0)[index[0]].item<int64_t>();
  return str_cat(count, count == 1 ? " non-finite value" : " non-finite values", " (first ", kind_of(value),
                 values.dim() == 0 ? std::string() : str_cat(" at index ", c10::IntArrayRef(index)), ")");
}

[[noreturn]] void throw_loss_not_finite(const torch::Tensor& l, int64_t step) {
  const std::string what = l.numel() == 1 ? kind_of(l.flatten()[0].item<double>()) : "not finite";
  throw TrainingHealthError(str_cat("step ", step, ": loss is ", what));
}

// The loss (when defined) and then every gradient: one flag each, read in
// one device synchronisation; throws for the first that is not finite.
// The flags come from one operation over all the tensors (issue 19: a
// kernel launch or two, not two per gradient): a tensor's 2-norm is nan or
// inf when one of its values is (a sum propagates both); a huge finite
// gradient can make it inf too, so a tensor flagged is checked again, exactly.
void check_finite(const torch::Tensor& loss, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
                  int64_t step) {
  std::vector<torch::Tensor> checked;
  std::vector<size_t> which;
  if (loss.defined()) checked.push_back(loss.detach());
  const size_t first_grad = checked.size();
  bool one_device = true;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor& grad = parameters[i].second.grad();
    if (!grad.defined()) continue;
    // Uncoalesced values hold the same entries (a duplicate sum overflowing is not caught; it is rare and the
    // loss check catches its effect one step later).
    const torch::Tensor values = grad.is_sparse() ? grad._values() : grad;
    checked.push_back(values.requires_grad() ? values.detach() : values);
    one_device = one_device && checked.back().device() == checked.front().device();
    which.push_back(i);
  }
  if (checked.empty()) return;
  std::vector<bool> ok(checked.size());
  if (one_device) {
    const torch::Tensor flags = torch::isfinite(torch::stack(at::_foreach_norm(checked, 2))).cpu();  // one sync
    const auto* screened = flags.data_ptr<bool>();
    for (size_t j = 0; j < checked.size(); ++j) ok[j] = screened[j] || torch::isfinite(checked[j]).all().item<bool>();
  } else {
    for (size_t j = 0; j < checked.size(); ++j) ok[j] = torch::isfinite(checked[j]).all().item<bool>();
  }
  if (first_grad == 1 && !ok[0]) throw_loss_not_finite(loss.detach(), step);
  for (size_t j = 0; j < which.size(); ++j) {
    if (ok[first_grad + j]) continue;
    const auto& [name, param] = parameters[which[j]];
    throw TrainingHealthError(
        str_cat("step ", step, ": gradient of '", name, "' has ", describe_non_finite(param.grad().detach())));
  }
}

}  // namespace

void check_loss_finite(const torch::Tensor& loss, int64_t step) {
  const torch::Tensor l = loss.detach();
  if (torch::isfinite(l).all().item<bool>()) return;
  throw_loss_not_finite(l, step);
}

void check_gradients_finite(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, int64_t step) {
  check_finite(torch::Tensor(), parameters, step);
}

void check_step_finite(const torch::Tensor& loss, const std::vector<std::pair<std::string, torch::Tensor>>& parameters,
                       int64_t step) {
  check_finite(loss, parameters, step);
}

}  // namespace recmod::train
