#pragma once
// Lazy input sizes, TorchRec's LazyModuleExtensionMixin / lazy_apply role:
// a dense module built without its input size (std::nullopt) creates its
// parameters on the first forward, from that batch's trailing dimension,
// and functions attached with lazy_apply() run once right after that forward.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <optional>
#include <vector>

namespace recmod {

using ModuleFn = std::function<void(torch::nn::Module&)>;

/// Mixin of recmod's dense modules that may be built without an input size
/// (Perceptron, MLP, the CrossNets). Such a module calls
/// `finish_forward(*this)` at the end of each forward.
class LazyModule {
 public:
  virtual ~LazyModule() = default;
  /// False while the input size is unknown (no parameters yet).
  virtual bool is_initialized() const = 0;
  /// Queues `fn` to run once right after the next forward (see lazy_apply).
  void add_lazy_fn(ModuleFn fn) { pending_.push_back(std::move(fn)); }
  bool has_pending_lazy_fns() const { return !pending_.empty(); }

 protected:
  /// Runs the queued functions over `self` and its submodules, children
  /// first as PyTorch's Module.apply, under NoGradGuard (they initialize
  /// parameters), then forgets them.
  void finish_forward(torch::nn::Module& self);

 private:
  std::vector<ModuleFn> pending_;
};

/// Applies `fn` to every submodule of `module` (children before parents,
/// as PyTorch's Module.apply) and to `module` itself.
void apply_children_first(torch::nn::Module& module, const ModuleFn& fn);

/// TorchRec's lazy_apply: attaches `fn` to `module`, to run over it and all
/// its submodules right after the module's next forward, once; typically
/// to initialize parameters that a lazy module creates on that forward.
/// A module that is not a recmod LazyModule has no forward hook: it gets
/// `fn` at once, which is equivalent when all its parameters exist; when it
/// contains an uninitialized lazy module, InputError says to attach `fn` to
/// that module instead.
void lazy_apply(torch::nn::Module& module, ModuleFn fn);

/// The input size a lazy module learns from `input`: its last dimension.
/// `who` names the module in the error for a 0-d input.
int64_t infer_in_size(const torch::Tensor& input, const char* who);

/// Options for tensors created lazily: the configured device/dtype where
/// given, the input's otherwise.
torch::TensorOptions lazy_tensor_options(const torch::Tensor& input, const std::optional<torch::Device>& device,
                                         const std::optional<torch::Dtype>& dtype);

}  // namespace recmod
