#include "recmod/modules/lazy.h"

#include <torch/torch.h>

#include "recmod/common/check.h"
#include "recmod/common/errors.h"

namespace recmod {

void apply_children_first(torch::nn::Module& module, const ModuleFn& fn) {
  for (const auto& child : module.children()) apply_children_first(*child, fn);
  fn(module);
}

void LazyModule::finish_forward(torch::nn::Module& self) {
  if (pending_.empty()) return;
  // Cleared before running so that a function that calls forward cannot re-enter.
  std::vector<ModuleFn> fns;
  fns.swap(pending_);
  torch::NoGradGuard no_grad;
  for (const auto& fn : fns) apply_children_first(self, fn);
}

namespace {

const torch::nn::Module* first_uninitialized_lazy(const torch::nn::Module& module) {
  for (const auto& m : module.modules(/*include_self=*/true)) {
    const auto* lazy = dynamic_cast<const LazyModule*>(m.get());
    if (lazy && !lazy->is_initialized()) return m.get();
  }
  return nullptr;
}

}  // namespace

void lazy_apply(torch::nn::Module& module, ModuleFn fn) {
  TORCH_CHECK(fn, "lazy_apply: empty function");
  if (auto* lazy = dynamic_cast<LazyModule*>(&module)) {
    lazy->add_lazy_fn(std::move(fn));
    return;
  }
  if (const auto* pending = first_uninitialized_lazy(module))
    throw_input_error("lazy_apply: ", module.name(), " has no forward hook and contains the uninitialized lazy module ",
                      pending->name(), "; attach the function to that module instead");
  torch::NoGradGuard no_grad;
  apply_children_first(module, fn);
}

void initialize_lazy_from_state_dict(torch::nn::Module& root, const StateDict& state) {
  // Pre-order: a container (MLP) sizes its first layer before that layer is visited.
  for (const auto& item : root.named_modules()) {
    auto* lazy = dynamic_cast<LazyModule*>(item.value().get());
    if (!lazy || lazy->is_initialized()) continue;
    const std::string key = (item.key().empty() ? "" : item.key() + ".") + lazy->in_size_key();
    const torch::Tensor* t = find_tensor(state, key);
    if (!t) continue;
    if (t->dim() <= lazy->in_size_dim())
      throw CheckpointError(str_cat("key '", key, "' has shape ", t->sizes(), "; expected at least ",
                                    lazy->in_size_dim() + 1, " dimensions"));
    lazy->initialize_parameters(t->size(lazy->in_size_dim()), *t);
  }
}

int64_t infer_in_size(const torch::Tensor& input, const char* who) {
  RECMOD_CHECK_INPUT(input.dim() >= 1, who, ": cannot infer the input size from a 0-d input");
  return input.size(-1);
}

torch::TensorOptions lazy_tensor_options(const torch::Tensor& input, const std::optional<torch::Device>& device,
                                         const std::optional<torch::Dtype>& dtype) {
  return torch::TensorOptions().device(device ? *device : input.device()).dtype(dtype ? *dtype : input.scalar_type());
}

}  // namespace recmod
