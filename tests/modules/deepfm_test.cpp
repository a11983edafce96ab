#include "recmod/modules/deepfm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/state_dict.h"
#include "recmod/modules/mlp.h"

namespace recmod {
namespace deepfm_test {

std::vector<std::string> keys(const torch::nn::Module& m) { return test::state_dict_keys(m); }
template <typename F>
std::string error_of(F&& f) { return test::error_of(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FactorizationMachineTest, SumsOverAllFlattenedElements) {
  FactorizationMachine fm;
  // x = [1, 2, 3, 4]: 0.5 * ((1+2+3+4)^2 - (1+4+9+16)) = 0.5 * (100 - 30) = 35
  // x = [0, -1, 2, 1]: 0.5 * (4 - 6) = -1
  torch::Tensor a = torch::tensor({1.0f, 2.0f, 0.0f, -1.0f}).view({2, 1, 2});
  torch::Tensor b = torch::tensor({3.0f, 4.0f, 2.0f, 1.0f}).view({2, 2, 1});
  torch::Tensor y = fm->forward({a, b});
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(torch::allclose(y, torch::tensor({{35.0f}, {-1.0f}})));
  EXPECT_TRUE(keys(*fm).empty());
}

TEST(FactorizationMachineTest, GradientIsSumMinusSelf) {
  torch::Tensor x = torch::randn({3, 2, 4}, torch::kFloat64).requires_grad_(true);
  FactorizationMachine fm;
  fm->forward({x}).sum().backward();
  // d/dx_f 0.5 * (S^2 - sum x^2) = S - x_f
  torch::Tensor expected = x.detach().sum({1, 2}, true) - x.detach();
  EXPECT_TRUE(torch::allclose(x.grad(), expected, 1e-12, 1e-12));
}

TEST(DeepFMTest, FeedsConcatenatedFlattenedEmbeddingsToDenseModule) {
  torch::manual_seed(2);
  torch::nn::Linear linear(torch::nn::LinearOptions(10, 3));
  DeepFM deepfm(linear);
  EXPECT_THAT(keys(*deepfm), ElementsAre("dense_module.weight", "dense_module.bias"));
  torch::Tensor a = torch::randn({4, 2, 3}), b = torch::randn({4, 1, 4});
  torch::Tensor concat = torch::cat({a.reshape({4, 6}), b.reshape({4, 4})}, 1);
  torch::Tensor expected = concat.matmul(linear->weight.t()) + linear->bias;
  EXPECT_TRUE(torch::allclose(deepfm->forward({a, b}), expected, 1e-5, 1e-6));
}

TEST(DeepFMTest, TakesAnyDenseModule) {
  DeepFM deepfm(MLP(MLPOptions(6, {2})));
  EXPECT_THAT(keys(*deepfm), ElementsAre("dense_module._mlp.0._linear.weight", "dense_module._mlp.0._linear.bias"));
  EXPECT_EQ(deepfm->forward({torch::randn({5, 3, 2})}).sizes(), (std::vector<int64_t>{5, 2}));
}

TEST(DeepFMTest, RejectsEmptyListAndMixedBatchSizes) {
  DeepFM deepfm(torch::nn::Linear(9, 1));
  EXPECT_THAT(error_of([&] { deepfm->forward({}); }),
              HasSubstr("DeepFM: expected at least one embedding of shape (B, N, D), got none"));
  EXPECT_THAT(error_of([&] { deepfm->forward({torch::zeros({3, 1, 4}), torch::zeros({2, 1, 5})}); }),
              HasSubstr("DeepFM: expected embeddings[1] of shape (3, N, D), got [2, 1, 5]"));
  FactorizationMachine fm;
  EXPECT_THAT(error_of([&] { fm->forward({torch::zeros({3})}); }),
              HasSubstr("FactorizationMachine: expected embeddings[0] of shape (3, N, D), got [3]"));
}

}  // namespace deepfm_test
}  // namespace recmod
