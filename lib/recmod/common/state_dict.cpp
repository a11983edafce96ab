#include "recmod/common/state_dict.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>

#include "recmod/common/errors.h"

namespace recmod {

namespace {
void collect(const torch::nn::Module& module, const std::string& prefix, StateDict& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/false))
    if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& child : module.named_children()) collect(*child.value(), prefix + child.key() + ".", out);
}
}  // namespace

StateDict state_dict(const torch::nn::Module& module) {
  StateDict out;
  collect(module, "", out);
  return out;
}

const torch::Tensor* find_tensor(const StateDict& dict, const std::string& key) {
  for (const auto& [k, v] : dict)
    if (k == key) return &v;
  return nullptr;
}

DeferredStateDict deferred(const StateDict& tensors) {
  DeferredStateDict out;
  out.reserve(tensors.size());
  for (const auto& [key, tensor] : tensors) {
    TORCH_CHECK(tensor.defined(), "deferred: tensor '", key, "' is undefined");
    out.push_back(DeferredTensor{key, tensor.sizes().vec(), tensor.scalar_type(), [made = tensor] { return made; }});
  }
  return out;
}

namespace {
/// Whether every float of p[0, n) is finite (its exponent bits not all
/// ones): one pass at memory speed, no temporaries (the loop vectorizes).
bool all_finite(const float* p, int64_t n) {
  constexpr int64_t kBlock = 1 << 16;
  for (int64_t at = 0; at < n; at += kBlock) {
    const int64_t end = std::min(n, at + kBlock);
    uint32_t bad = 0;
    for (int64_t i = at; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, p + i, sizeof bits);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad) return false;
  }
  return true;
}
}  // namespace

void check_finite(const torch::Tensor& value, const std::string& key, const std::string& origin) {
  if (!value.defined() || !value.is_floating_point() || value.numel() == 0) return;
  bool finite = true;
  if (value.is_cpu() && value.scalar_type() == torch::kFloat && value.is_contiguous()) {
    finite = all_finite(value.data_ptr<float>(), value.numel());
  } else {
    // In slices of 1M values: isfinite's temporaries (|x| and flags) are a
    // few MB, not 1.25x the tensor (1.14 GB for the Kaggle DLRM's largest
    // table, which eval's peak memory showed; issue 18).
    const torch::Tensor values = value.reshape(-1);
    constexpr int64_t kSlice = int64_t{1} << 20;
    for (int64_t at = 0; finite && at < values.numel(); at += kSlice)
      finite = torch::isfinite(values.slice(0, at, std::min(at + kSlice, values.numel()))).all().item<bool>();
  }
  if (finite) return;
  // Only a bad tensor pays for locating its first bad value.
  const torch::Tensor bad = torch::logical_not(torch::isfinite(value)).reshape(-1).to(torch::kCPU);
  const int64_t count = bad.sum().item<int64_t>();
  int64_t flat = bad.nonzero().select(1, 0)[0].item<int64_t>();
  const double first = value.reshape(-1)[flat].item<double>();
  std::vector<int64_t> index(static_cast<size_t>(value.dim()));
  for (int64_t d = value.dim() - 1; d >= 0; --d) {
    index[static_cast<size_t>(d)] = flat % value.size(d);
    flat /= value.size(d);
  }
  throw CheckpointError(str_cat(origin, ": key '", key, "' has ", std::isnan(first) ? "nan" : first > 0 ? "inf" : "-inf",
                                " at index ", c10::IntArrayRef(index), " (", count, " of ", value.numel(),
                                " values are nan or inf); a checkpoint's weights must be finite"));
}

void load_state_dict(torch::nn::Module& module, const StateDict& source, const std::string& origin) {
  const StateDict target = state_dict(module);
  std::set<std::string> target_keys;
  for (const auto& [k, _] : target) target_keys.insert(k);
  for (const auto& [k, _] : source)
    if (!target_keys.count(k)) {
      std::vector<std::string> keys(target_keys.begin(), target_keys.end());
      throw CheckpointError(
          str_cat(origin, ": unexpected key '", k, "'; the model's keys are ", join_names(keys)));
    }
  torch::NoGradGuard no_grad;
  for (const auto& [k, dst] : target) {
    const torch::Tensor* src = find_tensor(source, k);
    if (!src) throw CheckpointError(str_cat(origin, ": missing key '", k, "' (shape ", dst.sizes(), ")"));
    if (src->sizes() != dst.sizes())
      throw CheckpointError(str_cat(origin, ": key '", k, "' has shape ", src->sizes(), ", the model expects ",
                                    dst.sizes()));
    if (src->scalar_type() != dst.scalar_type())
      throw CheckpointError(str_cat(origin, ": key '", k, "' has dtype ", src->scalar_type(),
                                    ", the model expects ", dst.scalar_type()));
    check_finite(*src, k, origin);
    // copy_ keeps the module's tensor object (and so any views or optimizer
    // state that refer to it). A tensor that already is the source's bytes
    // (a table that adopted its checkpoint tensor) is not copied onto
    // itself: libtorch 1.13's copy_ would, and for a memory-mapped
    // checkpoint that writes every page (each becomes a private copy).
    const bool same_bytes = dst.is_alias_of(*src) && dst.storage_offset() == src->storage_offset() &&
                            dst.strides() == src->strides();
    if (!same_bytes) const_cast<torch::Tensor&>(dst).copy_(*src);
  }
}

}  // namespace recmod
