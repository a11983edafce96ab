#include "recmod/modules/mlp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace mlp_test {

std::vector<std::string> keys(const torch::nn::Module& m) { return test::state_dict_keys(m); }
using test::max_gradient_error;
template <typename F>
std::string error_of(F&& f) { return test::error_of(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PerceptronTest, LinearThenActivationByHand) {
  Perceptron p(PerceptronOptions(2, 2).activation(activation_by_name("relu")));
  {
    torch::NoGradGuard no_grad;
    p->linear()->weight.copy_(torch::tensor({{1.0, -1.0}, {2.0, 0.5}}));
    p->linear()->bias.copy_(torch::tensor({0.5, -4.0}));
  }
  torch::Tensor y = p->forward(torch::tensor({{3.0f, 1.0f}}));
  // row 0: 3 - 1 + 0.5 = 2.5; row 1: 6 + 0.5 - 4 = 2.5 -> relu keeps both
  EXPECT_TRUE(torch::allclose(y, torch::tensor({{2.5f, 2.5f}})));
  y = p->forward(torch::tensor({{0.0f, 2.0f}}));  // -2 + 0.5 = -1.5 -> 0; 1 - 4 = -3 -> 0
  EXPECT_TRUE(torch::equal(y, torch::zeros({1, 2})));
}

/// Without autograd (eval, predictions) a ReLU Perceptron on a CPU float
/// 2-D input runs one GEMM and one bias + ReLU pass: the same values as
/// relu(linear(x)) within 1e-5, under NoGradGuard and InferenceMode alike,
/// for batches above and below a parallel grain, with 1 and 2 threads.
TEST(PerceptronTest, NoGradLinearReluMatchesTheComposition) {
  const int threads = at::get_num_threads();
  for (int t : {1, 2}) {
    at::set_num_threads(t);
    for (int64_t b : {1, 7, 3000}) {
      torch::manual_seed(b);
      Perceptron p(PerceptronOptions(37, 19));
      const torch::Tensor x = torch::randn({b, 37});
      const torch::Tensor want = torch::relu(torch::nn::functional::linear(x, p->linear()->weight, p->linear()->bias));
      torch::Tensor no_grad, inference;
      {
        torch::NoGradGuard guard;
        no_grad = p->forward(x);
      }
      {
        c10::InferenceMode guard;
        inference = p->forward(x);
      }
      EXPECT_TRUE(torch::allclose(no_grad, want.detach(), 1e-5, 1e-5))
          << "threads " << t << " batch " << b << " max diff " << (no_grad - want).abs().max().item<double>();
      EXPECT_TRUE(torch::equal(no_grad, inference)) << "threads " << t << " batch " << b;
      EXPECT_TRUE(p->forward(x).requires_grad());  // with autograd: the composed ops, a graph
    }
  }
  at::set_num_threads(threads);
}

TEST(PerceptronTest, KeysWithoutBiasAndWithModuleActivation) {
  Perceptron plain(PerceptronOptions(5, 3).bias(false).activation(activation_by_name("sigmoid")));
  EXPECT_THAT(keys(*plain), ElementsAre("_linear.weight"));
  Perceptron swish(PerceptronOptions(5, 3).activation(Activation::module(SwishLayerNorm(3))));
  EXPECT_THAT(keys(*swish), ElementsAre("_linear.weight", "_linear.bias", "_activation_fn.norm.0.weight",
                                         "_activation_fn.norm.0.bias"));
}

TEST(PerceptronTest, RejectsWrongInputSize) {
  Perceptron p(PerceptronOptions(5, 3));
  EXPECT_THAT(error_of([&] { p->forward(torch::zeros({4, 6})); }),
              HasSubstr("Perceptron: expected input of shape (*, 5), got [4, 6]"));
}

TEST(MLPTest, StacksPerceptronsUnderTorchRecKeys) {
  MLP mlp(MLPOptions(6, {8, 4}).activation(mlp_activation("swish_layernorm")));
  EXPECT_THAT(keys(*mlp),
              ElementsAre("_mlp.0._linear.weight", "_mlp.0._linear.bias", "_mlp.0._activation_fn.norm.0.weight",
                          "_mlp.0._activation_fn.norm.0.bias", "_mlp.1._linear.weight", "_mlp.1._linear.bias",
                          "_mlp.1._activation_fn.norm.0.weight", "_mlp.1._activation_fn.norm.0.bias"));
  const StateDict sd = state_dict(*mlp);
  EXPECT_EQ(find_tensor(sd, "_mlp.0._linear.weight")->sizes(), (std::vector<int64_t>{8, 6}));
  EXPECT_EQ(find_tensor(sd, "_mlp.1._activation_fn.norm.0.weight")->sizes(), (std::vector<int64_t>{4}));
}

TEST(MLPTest, ForwardIsTheComposedLayers) {
  torch::manual_seed(3);
  MLP mlp(MLPOptions(6, {5, 3, 2}).bias(false).activation(mlp_activation("sigmoid")));
  torch::Tensor x = torch::randn({4, 6});
  torch::Tensor expected = x;
  for (auto layer : mlp->layers()) expected = torch::sigmoid(expected.matmul(layer->linear()->weight.t()));
  torch::Tensor y = mlp->forward(x);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6));
}

TEST(MLPTest, SharedModuleActivationIsRegisteredOnceAndShared) {
  Activation shared = Activation::module(SwishLayerNorm(4));
  MLP mlp(MLPOptions(4, {4, 4}).activation(same_activation(shared)));
  EXPECT_EQ(mlp->layers()[0]->named_parameters()["_activation_fn.norm.0.weight"].data_ptr(),
            mlp->layers()[1]->named_parameters()["_activation_fn.norm.0.weight"].data_ptr());
}

TEST(MLPTest, RejectsWrongInputAndBadSizes) {
  MLP mlp(MLPOptions(6, {8, 4}));
  EXPECT_THAT(error_of([&] { mlp->forward(torch::zeros({4, 5})); }),
              HasSubstr("MLP: expected input of shape (*, 6), got [4, 5]"));
  EXPECT_THAT(error_of([] { MLP(MLPOptions(6, {})); }), HasSubstr("MLP: layer_sizes must not be empty"));
  EXPECT_THAT(error_of([] { MLP(MLPOptions(6, {3, 0})); }), HasSubstr("MLP: layer_sizes must be positive, got [3, 0]"));
}

TEST(MLPTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  MLP mlp(MLPOptions(3, {4, 2}).activation(mlp_activation("swish_layernorm")));
  mlp->to(torch::kFloat64);
  torch::Tensor x = torch::randn({5, 3}, torch::kFloat64);
  for (const auto& p : mlp->named_parameters()) {
    EXPECT_LT(max_gradient_error([&] { return mlp->forward(x); }, p.value()), 1e-6) << p.key();
  }
  torch::Tensor xin = x.clone().requires_grad_(true);
  EXPECT_LT(max_gradient_error([&] { return mlp->forward(xin); }, xin), 1e-6);
}

}  // namespace mlp_test
}  // namespace recmod

// training.dense_precision: bf16 (issue 17). While autograd records, each
// layer multiplies bf16 copies of its input and fp32 weights; the output
// and the weights' gradients are fp32 and within bf16's rounding of the
// fp32 ones; without autograd the layers compute in fp32 as before.
namespace recmod {
namespace mlp_test {

TEST(MLPTest, Bf16ComputeKeepsFp32WeightsAndGradientsNearFp32) {
  torch::manual_seed(3);
  MLP fp32(MLPOptions(13, {64, 32, 1}));
  MLP bf16(MLPOptions(13, {64, 32, 1}));
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < fp32->parameters().size(); ++i) bf16->parameters()[i].copy_(fp32->parameters()[i]);
  }
  EXPECT_EQ(set_dense_compute_dtype(*bf16, torch::kBFloat16), 3);
  EXPECT_EQ(bf16->options.compute_dtype(), torch::kBFloat16);
  const torch::Tensor x = torch::randn({256, 13});
  const torch::Tensor y32 = fp32->forward(x), y16 = bf16->forward(x);
  ASSERT_EQ(y16.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(y32, y16));  // the products did run in bf16
  const double scale = y32.abs().max().item<double>();
  EXPECT_LT((y32 - y16).abs().max().item<double>(), 0.05 * scale);
  y32.square().sum().backward();
  y16.square().sum().backward();
  const auto params32 = fp32->parameters(), params16 = bf16->parameters();
  for (size_t i = 0; i < params32.size(); ++i) {
    const torch::Tensor& a = params32[i];
    const torch::Tensor& b = params16[i];
    ASSERT_EQ(b.scalar_type(), torch::kFloat);
    ASSERT_EQ(b.grad().scalar_type(), torch::kFloat);
    EXPECT_LT((a.grad() - b.grad()).norm().item<double>(), 0.05 * a.grad().norm().item<double>()) << i;
  }
  EXPECT_EQ(keys(*bf16), keys(*fp32));
  {
    torch::NoGradGuard no_grad;  // eval: fp32 as before
    EXPECT_TRUE(torch::equal(bf16->forward(x), fp32->forward(x)));
  }
  set_dense_compute_dtype(*bf16, std::nullopt);
  EXPECT_TRUE(torch::equal(bf16->forward(x), fp32->forward(x)));
}

// A layer whose activation is not plain ReLU (here a module with fp32
// parameters of its own) gets its product's output back in fp32.
TEST(PerceptronTest, Bf16ComputeWithAModuleActivation) {
  torch::manual_seed(4);
  Perceptron p(
      PerceptronOptions(8, 4).activation(mlp_activation("swish_layernorm")(4)).compute_dtype(torch::kBFloat16));
  const torch::Tensor x = torch::randn({16, 8}, torch::requires_grad());
  const torch::Tensor y = p->forward(x);
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  y.sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(p->linear()->weight.grad().scalar_type(), torch::kFloat);
}

}  // namespace mlp_test
}  // namespace recmod
