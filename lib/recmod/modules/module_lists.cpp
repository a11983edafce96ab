#include "recmod/modules/module_lists.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include "recmod/common/errors.h"

namespace recmod {

void init_mlp_weights_xavier_uniform(torch::nn::Module& module) {
  auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&module);
  if (!linear) return;
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(linear->weight);
  if (linear->bias.defined()) linear->bias.fill_(0.0);
}

namespace {

void expect_sizes(const std::vector<int64_t>& sizes, const char* function) {
  if (sizes.empty()) throw_input_error(function, ": sizes must not be empty");
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] <= 0) throw_input_error(function, ": sizes[", i, "] must be > 0, got ", sizes[i]);
}

torch::nn::ModuleList nested_copies(const ModuleFactory& make, const std::vector<int64_t>& sizes, size_t level) {
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < sizes[level]; ++i) {
    if (level + 1 == sizes.size()) {
      std::shared_ptr<torch::nn::Module> copy = make();
      copy->apply([](torch::nn::Module& m) { init_mlp_weights_xavier_uniform(m); });
      list->push_back(copy);
    } else {
      list->push_back(nested_copies(make, sizes, level + 1).ptr());
    }
  }
  return list;
}

torch::nn::ModuleList fold(const std::vector<std::shared_ptr<torch::nn::Module>>& modules, size_t& next,
                           const std::vector<int64_t>& sizes, size_t level) {
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < sizes[level]; ++i) {
    if (level + 1 == sizes.size())
      list->push_back(modules[next++]);
    else
      list->push_back(fold(modules, next, sizes, level + 1).ptr());
  }
  return list;
}

}  // namespace

torch::nn::ModuleList construct_modulelist_from_single_module(const std::shared_ptr<torch::nn::Module>& module,
                                                              const std::vector<int64_t>& sizes) {
  expect_sizes(sizes, "construct_modulelist_from_single_module");
  return nested_copies(
      [&module]() -> std::shared_ptr<torch::nn::Module> {
        try {
          return module->clone();
        } catch (const c10::Error&) {
          throw_input_error("construct_modulelist_from_single_module: ", module->name(),
                            " cannot be copied (it is not Cloneable); pass a factory that makes one");
        }
      },
      sizes, 0);
}

torch::nn::ModuleList construct_modulelist_from_single_module(const ModuleFactory& make,
                                                              const std::vector<int64_t>& sizes) {
  expect_sizes(sizes, "construct_modulelist_from_single_module");
  return nested_copies(make, sizes, 0);
}

torch::nn::ModuleList convert_list_of_modules_to_modulelist(const std::vector<std::shared_ptr<torch::nn::Module>>& modules,
                                                            const std::vector<int64_t>& sizes) {
  expect_sizes(sizes, "convert_list_of_modules_to_modulelist");
  int64_t count = 1;
  for (int64_t s : sizes) count *= s;
  if (static_cast<int64_t>(modules.size()) != count)
    throw_input_error("convert_list_of_modules_to_modulelist: the counts of modules (", modules.size(),
                      ") do not match with the required counts ", c10::IntArrayRef(sizes), " (", count, " in all)");
  size_t next = 0;
  return fold(modules, next, sizes, 0);
}

Activation extract_module_or_tensor_callable(const ModuleOrTensorCallable& module_or_callable) {
  if (const auto* make = std::get_if<std::function<torch::nn::AnyModule()>>(&module_or_callable)) {
    torch::nn::AnyModule module = (*make)();
    if (module.is_empty())
      throw_input_error("extract_module_or_tensor_callable: expected callable that takes no input to return a module, "
                        "but it returned none");
    return Activation::module(std::move(module));
  }
  if (const auto* module = std::get_if<torch::nn::AnyModule>(&module_or_callable)) return Activation::module(*module);
  return Activation::function(std::get<Activation::Fn>(module_or_callable), "function");
}

}  // namespace recmod
