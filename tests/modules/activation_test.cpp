#include "recmod/modules/activation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include <cmath>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace activation_test {

std::vector<std::string> keys(const torch::nn::Module& m) { return test::state_dict_keys(m); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SwishLayerNormTest, KeysFollowTorchRecSequentialNorm) {
  SwishLayerNorm one(6);
  EXPECT_THAT(keys(*one), ElementsAre("norm.0.weight", "norm.0.bias"));
  SwishLayerNorm two(std::vector<int64_t>{2, 3});
  EXPECT_EQ(two->named_parameters()["norm.0.weight"].sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(SwishLayerNormTest, MatchesHandComputedFormula) {
  SwishLayerNorm m(3);
  {
    torch::NoGradGuard no_grad;
    m->named_parameters()["norm.0.weight"].copy_(torch::tensor({1.0, 2.0, 0.5}));
    m->named_parameters()["norm.0.bias"].copy_(torch::tensor({0.0, -1.0, 1.0}));
  }
  const std::vector<double> x = {1.0, 2.0, 6.0};
  const double mean = 3.0, var = (4.0 + 1.0 + 9.0) / 3.0;  // biased variance, as LayerNorm
  const double w[] = {1.0, 2.0, 0.5}, b[] = {0.0, -1.0, 1.0};
  torch::Tensor y = m->forward(torch::tensor(x, torch::kFloat32).view({1, 3}));
  for (int i = 0; i < 3; ++i) {
    const double norm = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
    EXPECT_NEAR(y[0][i].item<double>(), x[i] / (1.0 + std::exp(-norm)), 1e-5) << i;
  }
}

TEST(SwishLayerNormTest, NormalizesOverAllTrailingDims) {
  SwishLayerNorm m(std::vector<int64_t>{2, 3});
  torch::Tensor x = torch::arange(12, torch::kFloat32).view({2, 2, 3});
  torch::Tensor y = m->forward(x);  // weight 1, bias 0: x * sigmoid(standardized over each (2, 3) block)
  torch::Tensor flat = x.view({2, 6});
  torch::Tensor z = (flat - flat.mean(1, true)) / torch::sqrt(flat.var(1, /*unbiased=*/false, true) + 1e-5);
  EXPECT_TRUE(torch::allclose(y.view({2, 6}), flat * torch::sigmoid(z), 1e-5, 1e-6));
}

TEST(SwishLayerNormTest, RejectsWrongTrailingShape) {
  SwishLayerNorm m(std::vector<int64_t>{2, 3});
  try {
    m->forward(torch::zeros({4, 3, 2}));
    FAIL() << "expected an error";
  } catch (const InputError& e) {  // a caller's mistake (docs/architecture.md, "Errors")
    EXPECT_THAT(e.what(), HasSubstr("SwishLayerNorm: expected input of shape (*, [2, 3]), got [4, 3, 2]"));
  }
}

TEST(ActivationTest, ByNameAndDefault) {
  torch::Tensor x = torch::tensor({-1.0, 0.0, 2.0});
  EXPECT_TRUE(torch::equal(Activation()(x), torch::tensor({0.0, 0.0, 2.0})));
  EXPECT_TRUE(torch::allclose(activation_by_name("sigmoid")(x), torch::sigmoid(x)));
  EXPECT_FALSE(activation_by_name("relu").is_module());
  try {
    activation_by_name("tanh");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown activation 'tanh'; expected one of [relu, sigmoid]"));
  }
}

TEST(ActivationTest, SwishLayerNormFactoryMakesAFreshModulePerLayer) {
  ActivationFactory factory = mlp_activation("swish_layernorm");
  Activation a = factory(4), b = factory(4);
  ASSERT_TRUE(a.is_module());
  EXPECT_NE(a.module_ptr().get(), b.module_ptr().get());
  EXPECT_EQ(a.module_ptr()->named_parameters()["norm.0.weight"].size(0), 4);
  EXPECT_THROW(mlp_activation("gelu"), InputError);
}

}  // namespace activation_test
}  // namespace recmod
