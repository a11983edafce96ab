#include "recmod/train/health.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

namespace recmod::train {
namespace health_test {

using ::testing::HasSubstr;
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename F>
std::string health_error(F&& f) {
  try {
    f();
  } catch (const TrainingHealthError& e) {
    return e.what();
  }
  return "<no TrainingHealthError>";
}

TEST(Health, LossChecks) {
  EXPECT_NO_THROW(check_loss_finite(torch::tensor(0.7f), 1));
  EXPECT_EQ(health_error([] { check_loss_finite(torch::tensor(kNan), 7); }), "step 7: loss is nan");
  EXPECT_EQ(health_error([] { check_loss_finite(torch::tensor(-kInf), 8); }), "step 8: loss is -inf");
  EXPECT_EQ(health_error([] { check_loss_finite(torch::tensor({1.0f, kInf}), 9); }), "step 9: loss is not finite");
}

TEST(Health, NamesTheFirstParameterWithANonFiniteGradient) {
  torch::Tensor a = torch::zeros({2, 3}, torch::requires_grad()), b = torch::zeros({2, 3}, torch::requires_grad()),
                c = torch::zeros({2}, torch::requires_grad()), unused = torch::zeros({2}, torch::requires_grad());
  a.mutable_grad() = torch::ones({2, 3});
  b.mutable_grad() = torch::tensor({{1.0f, 2.0f, 3.0f}, {kInf, 5.0f, kNan}});
  c.mutable_grad() = torch::tensor({kNan, 1.0f});
  const std::vector<std::pair<std::string, torch::Tensor>> params{
      {"unused", unused}, {"dense_arch._mlp.0._linear.weight", a}, {"over_arch._mlp.1._linear.weight", b}, {"c", c}};
  EXPECT_EQ(health_error([&] { check_gradients_finite(params, 12); }),
            "step 12: gradient of 'over_arch._mlp.1._linear.weight' has 2 non-finite values (first inf at index "
            "[1, 0])");
  b.mutable_grad() = torch::ones({2, 3});
  EXPECT_EQ(health_error([&] { check_gradients_finite(params, 13); }),
            "step 13: gradient of 'c' has 1 non-finite value (first nan at index [0])");
  c.mutable_grad() = torch::ones({2});
  EXPECT_NO_THROW(check_gradients_finite(params, 14));
}

// The loss and the gradients in one read: the loss's message first (as the
// separate checks give it when the loss is checked before backward), then
// the gradients'.
TEST(Health, StepCheckReportsTheLossFirstThenTheGradients) {
  torch::Tensor a = torch::zeros({3}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({1.0f, kNan, 2.0f});
  const std::vector<std::pair<std::string, torch::Tensor>> params{{"a", a}};
  EXPECT_EQ(health_error([&] { check_step_finite(torch::tensor(kNan), params, 5); }), "step 5: loss is nan");
  EXPECT_EQ(health_error([&] { check_step_finite(torch::tensor(kInf), {}, 6); }), "step 6: loss is inf");
  EXPECT_EQ(health_error([&] { check_step_finite(torch::tensor(0.5f), params, 7); }),
            "step 7: gradient of 'a' has 1 non-finite value (first nan at index [1])");
  a.mutable_grad() = torch::ones({3});
  EXPECT_NO_THROW(check_step_finite(torch::tensor(0.5f), params, 8));
}

// The flags come from each tensor's 2-norm (one operation over all of
// them): a huge but finite gradient, whose norm overflows to inf, and an
// empty one pass; an inf among huge values is still named.
TEST(Health, HugeFiniteAndEmptyGradientsPass) {
  torch::Tensor huge = torch::zeros({4}, torch::requires_grad()), empty = torch::zeros({0}, torch::requires_grad()),
                half = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
  huge.mutable_grad() = torch::full({4}, 1e30f);
  empty.mutable_grad() = torch::zeros({0});
  half.mutable_grad() = torch::tensor({1e300, -1e300}, torch::kDouble);
  const std::vector<std::pair<std::string, torch::Tensor>> params{{"huge", huge}, {"empty", empty}, {"half", half}};
  EXPECT_NO_THROW(check_step_finite(torch::tensor(3e38f), params, 1));
  huge.mutable_grad() = torch::tensor({1e30f, -kInf, 1e30f, 0.0f});
  EXPECT_EQ(health_error([&] { check_step_finite(torch::tensor(0.5f), params, 2); }),
            "step 2: gradient of 'huge' has 1 non-finite value (first -inf at index [1])");
  huge.mutable_grad() = torch::ones({4});
  half.mutable_grad() = torch::tensor({1e300, std::numeric_limits<double>::quiet_NaN()}, torch::kDouble);
  EXPECT_EQ(health_error([&] { check_gradients_finite(params, 3); }),
            "step 3: gradient of 'half' has 1 non-finite value (first nan at index [1])");
}

TEST(Health, SparseGradientReportsTheTableRow) {
  torch::Tensor table = torch::zeros({100, 4}, torch::requires_grad());
  table.mutable_grad() = torch::sparse_coo_tensor(torch::tensor({{42, 7, 42}}, torch::kLong),
                                                  torch::tensor({{0.0f, 0.0f, 1.0f, 0.0f},
                                                                 {1.0f, 1.0f, 1.0f, 1.0f},
                                                                 {0.0f, 0.0f, kNan, 0.0f}}),
                                                  {100, 4});
  EXPECT_THAT(health_error([&] { check_gradients_finite({{"ebc.embedding_bags.t1.weight", table}}, 3); }),
              HasSubstr("step 3: gradient of 'ebc.embedding_bags.t1.weight' has 1 non-finite value (first nan at "
                        "index [42, 2])"));
}

}  // namespace health_test
}  // namespace recmod::train
