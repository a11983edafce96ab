#pragma once
// torchrec.modules.utils' helpers for lists of modules: copies of one module
// in a (nested) ModuleList, a flat list folded into one, the Xavier
// re-initialisation they apply, and extract_module_or_tensor_callable.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>

#include <functional>
#include <memory>
#include <variant>
#include <vector>

#include "recmod/modules/activation.h"

namespace recmod {

/// TorchRec's init_mlp_weights_xavier_uniform, for Module::apply: a Linear's
/// weight ~ xavier_uniform, its bias 0; any other module is left alone.
void init_mlp_weights_xavier_uniform(torch::nn::Module& module);

/// A module made fresh per call: TorchRec's Callable[[], nn.Module].
using ModuleFactory = std::function<std::shared_ptr<torch::nn::Module>()>;

/// TorchRec's construct_modulelist_from_single_module: a ModuleList nested
/// sizes.size() deep (sizes[0] entries, each sizes[1] entries, ...) of
/// copies of `module`, every Linear in them re-initialised by
/// init_mlp_weights_xavier_uniform. The copy is Module::clone(), which
/// torch's own modules have (Cloneable); for a module without it pass a
/// factory instead (each call's module is then the copy).
torch::nn::ModuleList construct_modulelist_from_single_module(const std::shared_ptr<torch::nn::Module>& module,
                                                              const std::vector<int64_t>& sizes);
torch::nn::ModuleList construct_modulelist_from_single_module(const ModuleFactory& make,
                                                              const std::vector<int64_t>& sizes);

/// TorchRec's convert_list_of_modules_to_modulelist. C++ has no nested list
/// of modules, so `modules` is the nesting flattened in row-major order:
/// exactly prod(sizes) modules, folded into ModuleLists of `sizes`.
torch::nn::ModuleList convert_list_of_modules_to_modulelist(const std::vector<std::shared_ptr<torch::nn::Module>>& modules,
                                                            const std::vector<int64_t>& sizes);

/// TorchRec's extract_module_or_tensor_callable: a factory is called (its
/// module is the result), a module or a tensor function is returned as it is;
/// the result is an Activation (module or function), as MLP / Perceptron
/// take it. The module must have forward(const Tensor&) -> Tensor.
using ModuleOrTensorCallable = std::variant<std::function<torch::nn::AnyModule()>, torch::nn::AnyModule, Activation::Fn>;
Activation extract_module_or_tensor_callable(const ModuleOrTensorCallable& module_or_callable);

}  // namespace recmod
