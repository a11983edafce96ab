#include "recmod/optim/row_update.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::optim {
namespace row_update_test {

// The scalar rule (CPU kernels) and the tensor-op form (other devices) are
// one rule: the same rows come out, for every algorithm and a float table.
class RowUpdateForms : public ::testing::TestWithParam<std::string> {};

TEST_P(RowUpdateForms, ScalarAndTensorOpFormsAgree) {
  const RowUpdate rule = row_update_of(GetParam(), "test");
  const OptimizerOptions o = OptimizerOptions(GetParam(), 0.1).weight_decay(0.01).initial_accumulator_value(0.2);
  torch::manual_seed(3);
  const int64_t rows = 6, dim = 11;  // dim not a multiple of 8: the partial sums' tail
  torch::Tensor table = torch::randn({rows, dim});
  torch::Tensor state = make_row_state(rule, o, table.sizes(), table.options());
  const torch::Tensor touched = torch::tensor({0, 2, 5}, torch::kLong);
  const torch::Tensor grad = torch::randn({3, dim});

  torch::Tensor table2 = table.clone();
  torch::Tensor state2 = state.defined() ? state.clone() : state;
  update_rows_with_tensor_ops(rule, o, table2, state2, touched, grad);

  const RowUpdateScalars<float> k(o);
  const int64_t stride = state_per_row(rule, dim);
  for (int64_t i = 0; i < touched.numel(); ++i) {
    const int64_t r = touched[i].item<int64_t>();
    apply_row_update<float, float>(rule, k, grad[i].contiguous().data_ptr<float>(), table[r].data_ptr<float>(),
                                   state.defined() ? state.data_ptr<float>() + r * stride : nullptr, dim);
  }
  EXPECT_TRUE(torch::allclose(table, table2, 1e-6, 1e-7)) << (table - table2).abs().max();
  if (state.defined()) {
    EXPECT_TRUE(torch::allclose(state, state2, 1e-6, 1e-7));
  }
  // Untouched rows stay as they were.
  EXPECT_TRUE(torch::equal(table[1], table2[1]));
}

INSTANTIATE_TEST_SUITE_P(AllRules, RowUpdateForms, ::testing::Values("sgd", "adagrad", "rowwise_adagrad"));

TEST(RowUpdate, StateNamesAreTorchRecs) {
  EXPECT_STREQ(state_name(RowUpdate::adagrad), "sum");
  EXPECT_STREQ(state_name(RowUpdate::rowwise_adagrad), "momentum1");
  EXPECT_STREQ(state_name(RowUpdate::sgd), "");
  EXPECT_EQ(state_per_row(RowUpdate::adagrad, 16), 16);
  EXPECT_EQ(state_per_row(RowUpdate::rowwise_adagrad, 16), 1);
}

TEST(OptimizerOptions, FindProblemNamesTheField) {
  EXPECT_FALSE(find_problem(OptimizerOptions("adam", 0.001), OptimizerRole::dense).has_value());
  auto p = find_problem(OptimizerOptions("adam").beta1(1.0), OptimizerRole::dense);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field, "beta1");
  EXPECT_EQ(p->message, "must be in [0, 1), got 1");
  p = find_problem(OptimizerOptions("rowwise_adagrad"), OptimizerRole::dense);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field, "type");
  EXPECT_FALSE(find_problem(OptimizerOptions("sgd", 0.0), OptimizerRole::embedding).has_value());  // lr 0 freezes
  p = find_problem(OptimizerOptions("sgd", -0.1), OptimizerRole::embedding);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field, "lr");
}

}  // namespace row_update_test
}  // namespace recmod::optim
