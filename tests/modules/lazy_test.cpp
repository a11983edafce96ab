#include "recmod/modules/lazy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/deepfm.h"
#include "recmod/modules/mlp.h"

namespace recmod {
namespace lazy_test {

std::vector<std::string> keys(const torch::nn::Module& m) { return test::state_dict_keys(m); }
template <typename F>
std::string error_of(F&& f) { return test::error_of(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

/// Fills every Linear weight with 1 and bias with 0; counts its calls.
struct FillLinear {
  int* calls;
  void operator()(torch::nn::Module& m) const {
    ++*calls;
    if (auto* linear = m.as<torch::nn::LinearImpl>()) {
      linear->weight.fill_(1.0);
      if (linear->bias.defined()) linear->bias.zero_();
    }
  }
};

TEST(LazyTest, MLPLearnsInSizeFromFirstBatch) {
  MLP mlp(MLPOptions(std::nullopt, {4, 2}));
  EXPECT_FALSE(mlp->is_initialized());
  EXPECT_THAT(keys(*mlp), ElementsAre("_mlp.1._linear.weight", "_mlp.1._linear.bias"));
  torch::Tensor y = mlp->forward(torch::randn({3, 7}));
  EXPECT_TRUE(mlp->is_initialized());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_THAT(keys(*mlp), ElementsAre("_mlp.0._linear.weight", "_mlp.0._linear.bias", "_mlp.1._linear.weight",
                                      "_mlp.1._linear.bias"));
  EXPECT_EQ(find_tensor(state_dict(*mlp), "_mlp.0._linear.weight")->sizes(), (std::vector<int64_t>{4, 7}));
  EXPECT_THAT(error_of([&] { mlp->forward(torch::randn({3, 6})); }),
              HasSubstr("MLP: expected input of shape (*, 7), got [3, 6]"));
}

TEST(LazyTest, LazyPerceptronKeepsTorchRecKeyOrder) {
  Perceptron p(PerceptronOptions(std::nullopt, 3).activation(Activation::module(SwishLayerNorm(3))));
  EXPECT_THAT(keys(*p), ElementsAre());
  p->forward(torch::randn({2, 5}));
  EXPECT_THAT(keys(*p), ElementsAre("_linear.weight", "_linear.bias", "_activation_fn.norm.0.weight",
                                     "_activation_fn.norm.0.bias"));
}

TEST(LazyTest, CrossNetsCreateParametersOnFirstForward) {
  CrossNet full(CrossNetOptions(std::nullopt, 2));
  LowRankMixtureCrossNet mix(LowRankMixtureCrossNetOptions(std::nullopt, 1).num_experts(2).low_rank(2));
  EXPECT_TRUE(full->parameters().empty());
  full->forward(torch::randn({2, 5}));
  mix->forward(torch::randn({2, 5}));
  EXPECT_THAT(keys(*full), ElementsAre("kernels.0", "kernels.1", "bias.0", "bias.1"));
  EXPECT_EQ(full->named_parameters()["kernels.1"].sizes(), (std::vector<int64_t>{5, 5}));
  EXPECT_EQ(mix->named_parameters()["gates.1.weight"].sizes(), (std::vector<int64_t>{1, 5}));
  EXPECT_TRUE(torch::equal(full->named_parameters()["bias.0"], torch::zeros({5, 1})));
  EXPECT_THAT(error_of([&] { full->forward(torch::randn({2, 6})); }),
              HasSubstr("CrossNet: expected input of shape (B, 5), got [2, 6]"));
}

TEST(LazyTest, ParametersTakeTheFirstBatchDtype) {
  LowRankCrossNet low(LowRankCrossNetOptions(std::nullopt, 1));
  MLP mlp(MLPOptions(std::nullopt, {3, 2}));
  torch::Tensor x = torch::randn({2, 4}, torch::kFloat64);
  EXPECT_EQ(low->forward(x).scalar_type(), torch::kFloat64);
  EXPECT_EQ(mlp->forward(x).scalar_type(), torch::kFloat64);
  for (const auto& p : mlp->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
}

TEST(LazyTest, LazyApplyRunsOnceRightAfterFirstForward) {
  torch::manual_seed(0);
  MLP mlp(MLPOptions(std::nullopt, {2}).activation(mlp_activation("sigmoid")));
  int calls = 0;
  lazy_apply(*mlp, FillLinear{&calls});
  EXPECT_EQ(calls, 0);
  torch::Tensor x = torch::tensor({{1.0f, -2.0f, 0.5f}});
  torch::Tensor first = mlp->forward(x);
  // Ran over MLP, _mlp, the Perceptron, its _linear: once each.
  EXPECT_EQ(calls, 4);
  // The first output used the default init; the function ran after it.
  const float filled = 1.0f / (1.0f + std::exp(0.5f));  // sigmoid(1 - 2 + 0.5)
  EXPECT_FALSE(torch::allclose(first, torch::full({1, 2}, filled)));
  EXPECT_TRUE(torch::allclose(mlp->forward(x), torch::full({1, 2}, filled)));
  mlp->forward(x);
  EXPECT_EQ(calls, 4);
}

TEST(LazyTest, ApplyVisitsChildrenBeforeParents) {
  MLP mlp(MLPOptions(2, {2}));
  std::vector<std::string> order;
  apply_children_first(*mlp, [&](torch::nn::Module& m) { order.push_back(m.name()); });
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order.front(), "torch::nn::LinearImpl");
  EXPECT_EQ(order.back(), "recmod::MLPImpl");
}

torch::nn::Sequential lazy_model() {
  return torch::nn::Sequential(
      LowRankMixtureCrossNet(LowRankMixtureCrossNetOptions(std::nullopt, 2).num_experts(2).low_rank(2)),
      MLP(MLPOptions(std::nullopt, {3, 1}).activation(mlp_activation("swish_layernorm"))));
}

TEST(LazyTest, CheckpointOfInferredSizesLoadsBeforeAnyForward) {
  torch::manual_seed(9);
  torch::nn::Sequential trained = lazy_model();
  torch::Tensor x = torch::randn({4, 5});
  torch::Tensor expected = trained->forward(x);
  const StateDict checkpoint = state_dict(*trained);

  torch::nn::Sequential restored = lazy_model();
  EXPECT_THAT(error_of([&] { load_state_dict(*restored, checkpoint, "ckpt.pt"); }), HasSubstr("ckpt.pt"));
  initialize_lazy_from_state_dict(*restored, checkpoint);
  EXPECT_EQ(restored[0]->as<LowRankMixtureCrossNetImpl>()->options.in_features(), 5);
  EXPECT_EQ(restored[1]->as<MLPImpl>()->options.in_size(), 5);
  load_state_dict(*restored, checkpoint, "ckpt.pt");
  EXPECT_TRUE(torch::equal(restored->forward(x), expected));
}

TEST(LazyTest, InitializeFromStateDictLeavesModulesWithoutTheirKeyLazy) {
  MLP mlp(MLPOptions(std::nullopt, {2}));
  initialize_lazy_from_state_dict(*mlp, {{"other.weight", torch::zeros({2, 3})}});
  EXPECT_FALSE(mlp->is_initialized());
  mlp->initialize_parameters(3, torch::zeros({1}, torch::kFloat64));
  Perceptron first = mlp->layers()[0];
  EXPECT_EQ(first->linear()->weight.scalar_type(), torch::kFloat64);
  EXPECT_THAT(error_of([&] { mlp->initialize_parameters(4, torch::zeros({1})); }),
              HasSubstr("MLP: already initialized with in_size 3"));
}

TEST(LazyTest, LazyApplyOnPlainModules) {
  int calls = 0;
  torch::nn::Linear linear(3, 2);
  lazy_apply(*linear, FillLinear{&calls});  // sized already: applied at once
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(linear->weight, torch::ones({2, 3})));

  torch::nn::Sequential seq(MLP(MLPOptions(std::nullopt, {2})));
  EXPECT_THAT(error_of([&] { lazy_apply(*seq, FillLinear{&calls}); }),
              HasSubstr("contains the uninitialized lazy module recmod::MLPImpl; attach the function to that module "
                        "instead"));
}

TEST(LazyTest, ModulesRunForwardAndBackwardOnTheInputDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA);
  torch::Tensor x = torch::randn({4, 6}, cuda);
  // Lazy modules create their parameters on the first batch's device.
  MLP mlp(MLPOptions(std::nullopt, {5, 3}).activation(mlp_activation("swish_layernorm")));
  LowRankMixtureCrossNet mix(LowRankMixtureCrossNetOptions(std::nullopt, 2).num_experts(3).low_rank(2));
  CrossNet full(CrossNetOptions(6, 2));
  VectorCrossNet vec(VectorCrossNetOptions(6, 2));
  LowRankCrossNet low(LowRankCrossNetOptions(6, 2));
  full->to(cuda);
  vec->to(cuda);
  low->to(cuda);
  torch::Tensor loss = mlp->forward(x).sum() + mix->forward(x).sum() + full->forward(x).sum() +
                       vec->forward(x).sum() + low->forward(x).sum();
  DeepFM deepfm(torch::nn::Linear(6, 2));
  deepfm->to(cuda);
  FactorizationMachine fm;
  loss = loss + deepfm->forward({x.view({4, 2, 3})}).sum() + fm->forward({x.view({4, 3, 2})}).sum();
  loss.backward();
  for (const torch::nn::Module* m : std::vector<const torch::nn::Module*>{mlp.get(), mix.get(), full.get(), vec.get(),
                                                                         low.get(), deepfm.get()}) {
    for (const auto& p : m->named_parameters()) {
      EXPECT_TRUE(p.value().is_cuda()) << m->name() << " " << p.key();
      ASSERT_TRUE(p.value().grad().defined()) << m->name() << " " << p.key();
      EXPECT_TRUE(p.value().grad().is_cuda()) << m->name() << " " << p.key();
    }
  }
}

}  // namespace lazy_test
}  // namespace recmod
