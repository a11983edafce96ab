#include "recmod/modules/module_lists.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/modules/mlp.h"
#include "recmod/modules/utils.h"
#include "support/test_util.h"

namespace recmod {
namespace module_lists_test {

using ::testing::HasSubstr;

torch::nn::LinearImpl& linear_at(torch::nn::ModuleList list, size_t i, size_t j) {
  return *list[i]->as<torch::nn::ModuleList>()->ptr(j)->as<torch::nn::Linear>();
}

TEST(ModuleLists, CopiesOfOneModuleAreNestedAndEachReinitialised) {
  torch::manual_seed(0);
  torch::nn::Linear base(8, 4);
  torch::NoGradGuard no_grad;
  base->weight.fill_(7.0);
  base->bias.fill_(3.0);
  auto list = construct_modulelist_from_single_module(base.ptr(), {2, 3});
  ASSERT_EQ(list->size(), 2u);
  ASSERT_EQ(list[0]->as<torch::nn::ModuleList>()->size(), 3u);
  const double bound = std::sqrt(6.0 / (8 + 4));  // xavier_uniform for fan_in 8, fan_out 4
  for (size_t i = 0; i < 2; ++i)
    for (size_t j = 0; j < 3; ++j) {
      const auto& copy = linear_at(list, i, j);
      EXPECT_NE(copy.weight.data_ptr(), base->weight.data_ptr());  // a copy, not the module
      EXPECT_LE(copy.weight.abs().max().item<double>(), bound);
      EXPECT_TRUE(torch::equal(copy.bias, torch::zeros({4})));
    }
  // Each copy is drawn anew; the original is untouched.
  EXPECT_FALSE(torch::equal(linear_at(list, 0, 0).weight, linear_at(list, 1, 2).weight));
  EXPECT_TRUE(torch::equal(base->weight, torch::full({4, 8}, 7.0)));
}

TEST(ModuleLists, AFactoryServesModulesThatCannotBeCloned) {
  auto list = construct_modulelist_from_single_module(
      []() -> std::shared_ptr<torch::nn::Module> { return MLP(MLPOptions(6, {4, 2})).ptr(); }, {3});
  ASSERT_EQ(list->size(), 3u);
  // The MLP's Linear layers were re-initialised: biases are 0 (torch's init draws them).
  for (const auto& p : list[1]->named_parameters()) {
    if (p.key().find("bias") != std::string::npos) {
      EXPECT_TRUE(torch::equal(p.value(), torch::zeros_like(p.value())));
    }
  }
  EXPECT_THAT(test::error_of<InputError>([] { construct_modulelist_from_single_module(MLP(MLPOptions(6, {4})).ptr(), {2}); }),
              HasSubstr("cannot be copied (it is not Cloneable); pass a factory"));
}

TEST(ModuleLists, AFlatListFoldsIntoTheNestedShape) {
  std::vector<std::shared_ptr<torch::nn::Module>> modules;
  for (int i = 0; i < 6; ++i) modules.push_back(torch::nn::Linear(2, 1 + i).ptr());
  auto list = convert_list_of_modules_to_modulelist(modules, {2, 3});
  EXPECT_EQ(linear_at(list, 1, 0).weight.size(0), 4);  // row-major: [1][0] is the 4th module
  EXPECT_EQ(list[1]->as<torch::nn::ModuleList>()->ptr(0).get(), modules[3].get());
  EXPECT_THAT(test::error_of<InputError>([&] { convert_list_of_modules_to_modulelist(modules, {4}); }),
              HasSubstr("the counts of modules (6) do not match with the required counts [4]"));
}

TEST(ModuleLists, ExtractModuleOrTensorCallable) {
  const Activation from_factory = extract_module_or_tensor_callable(
      std::function<torch::nn::AnyModule()>([] { return torch::nn::AnyModule(SwishLayerNorm(3)); }));
  EXPECT_TRUE(from_factory.is_module());
  const Activation from_function =
      extract_module_or_tensor_callable(Activation::Fn([](const torch::Tensor& x) { return torch::tanh(x); }));
  EXPECT_FALSE(from_function.is_module());
  EXPECT_TRUE(torch::allclose(from_function(torch::ones({2})), torch::tanh(torch::ones({2}))));
}

TEST(ModuleLists, OutputDimensionChecksReturnWhetherTheyHold) {
  torch::nn::Linear linear(6, 3);
  EXPECT_TRUE(check_module_output_dimension(linear, 6, 3));
  EXPECT_FALSE(check_module_output_dimension(linear, 6, 4));
  std::vector<torch::nn::AnyModule> list = {torch::nn::AnyModule(torch::nn::Linear(6, 3)),
                                            torch::nn::AnyModule(torch::nn::Linear(6, 3))};
  EXPECT_TRUE(check_module_output_dimension(list, 6, 3));
  list.emplace_back(torch::nn::Linear(6, 2));
  EXPECT_FALSE(check_module_output_dimension(list, 6, 3));
}

}  // namespace module_lists_test
}  // namespace recmod
