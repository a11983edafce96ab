// KeyedJaggedTensor with a variable batch per feature (TorchRec's VBE:
// stride_per_key_per_rank, inverse_indices) and what EmbeddingBagCollection
// and EmbeddingCollection do with it. The golden-next cases pin TorchRec's
// numbers; these tests pin the edges.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "support/test_util.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/optim/optimizer_options.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod {
namespace variable_batch_test {

using ::testing::HasSubstr;

template <typename F>
std::string error_of(F&& f) {
  return test::error_of<InputError>(std::forward<F>(f));
}

// FORMAT.md's worked example: user has 2 samples [3], [0, 4]; item has 3
// samples [1], [], [2, 0]; a batch of 4 rows uses users 0 0 1 1 and items 2 0 1 0.
KeyedJaggedTensor user_item(bool with_inverse = true) {
  auto kjt = KeyedJaggedTensor::from_lengths_variable_stride(
      {"user", "item"}, torch::tensor({3, 0, 4, 1, 2, 0}, torch::kLong), torch::tensor({1, 2, 1, 0, 2}, torch::kLong),
      std::nullopt, {{2}, {3}});
  if (!with_inverse) return kjt;
  return kjt.with_inverse_indices({{"user", "item"}, torch::tensor({{0, 0, 1, 1}, {2, 0, 1, 0}}, torch::kLong)});
}

TEST(VariableBatchKjtTest, PerKeyStridesLengthsAndValues) {
  auto kjt = user_item();
  EXPECT_TRUE(kjt.variable_stride_per_key());
  EXPECT_EQ(kjt.stride_per_key(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(kjt.length_per_key(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(kjt.offset_per_key(), (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(kjt.lengths_offset_per_key(), (std::vector<int64_t>{0, 2, 5}));
  auto item = kjt["item"];
  EXPECT_TRUE(torch::equal(item.lengths(), torch::tensor({1, 0, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(item.values(), torch::tensor({1, 2, 0}, torch::kLong)));
  // Code written for one batch size refuses it instead of misreading it.
  EXPECT_THAT(error_of([&] { (void)kjt.stride(); }), HasSubstr("variable batch per feature (stride_per_key [2, 3])"));
}

TEST(VariableBatchKjtTest, PermuteSelectAndSplitKeepEachKeysStride) {
  auto kjt = user_item();
  auto swapped = kjt.select({"item", "user"});
  EXPECT_EQ(swapped.stride_per_key(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(swapped.stride_per_key_per_rank(), (std::vector<std::vector<int64_t>>{{3}, {2}}));
  EXPECT_TRUE(torch::equal(swapped["user"].values(), torch::tensor({3, 0, 4}, torch::kLong)));
  ASSERT_TRUE(swapped.inverse_indices_or_none());
  auto parts = kjt.split({1, 1});
  EXPECT_EQ(parts[1].stride_per_key(), (std::vector<int64_t>{3}));
  EXPECT_TRUE(torch::equal(parts[1].lengths(), torch::tensor({1, 0, 2}, torch::kLong)));
  EXPECT_THROW(KeyedJaggedTensor::concat({kjt, kjt}), InputError);
}

TEST(VariableBatchKjtTest, BadStridesAndInverseIndicesAreRefused) {
  auto make = [](std::vector<std::vector<int64_t>> strides) {
    return KeyedJaggedTensor::from_lengths_variable_stride({"a", "b"}, torch::tensor({1, 2}, torch::kLong),
                                                           torch::tensor({1, 1, 0}, torch::kLong), std::nullopt, strides);
  };
  EXPECT_THAT(error_of([&] { make({{1}, {1}}); }), HasSubstr("adds up to 2 samples but there are 3 lengths"));
  EXPECT_THAT(error_of([&] { make({{1}}); }), HasSubstr("has 1 lists for 2 keys"));
  EXPECT_THAT(error_of([&] { make({{2}, {-1, 2}}); }), HasSubstr("negative stride -1"));
  auto kjt = make({{1}, {2}});
  EXPECT_THAT(error_of([&] { kjt.with_inverse_indices({{"a"}, torch::tensor({{0, 1}}, torch::kInt)}); }),
              HasSubstr("must be an int64 2-D tensor"));
  EXPECT_THAT(error_of([&] { kjt.with_inverse_indices({{"a", "b"}, torch::tensor({{0, 0}}, torch::kLong)}); }),
              HasSubstr("has 1 rows for 2 keys"));
}

std::vector<EmbeddingBagConfig> user_item_tables() {
  EmbeddingBagConfig user(5, 2, "t_user", {"user"}), item(3, 1, "t_item", {"item"});
  return {user, item};
}

TEST(VariableBatchEbcTest, PoolsPerFeatureThenExpandsToTheBatch) {
  EmbeddingBagCollection ebc(user_item_tables(), false);
  {
    torch::NoGradGuard no_grad;
    ebc->table_weight("t_user").copy_(torch::tensor({{0.f, 0.f}, {1.f, 10.f}, {2.f, 20.f}, {3.f, 30.f}, {4.f, 40.f}}));
    ebc->table_weight("t_item").copy_(torch::tensor({{0.f}, {100.f}, {200.f}}));
  }
  auto out = ebc->forward(user_item());
  EXPECT_TRUE(torch::equal(out.values(), torch::tensor({{3.f, 30.f, 200.f}, {3.f, 30.f, 100.f},
                                                        {4.f, 40.f, 0.f}, {4.f, 40.f, 100.f}})));
  out.values().sum().backward();
  // Each user sample is shown in two rows; item id 1 (item sample 0) twice.
  EXPECT_TRUE(torch::equal(ebc->table_weight("t_user").grad(),
                           torch::tensor({{2.f, 2.f}, {0.f, 0.f}, {0.f, 0.f}, {2.f, 2.f}, {2.f, 2.f}})));
  EXPECT_TRUE(torch::equal(ebc->table_weight("t_item").grad(), torch::tensor({{1.f}, {2.f}, {1.f}})));
}

TEST(VariableBatchEbcTest, NeedsInverseIndicesForUnequalBatchesAndARowPerFeature) {
  EmbeddingBagCollection ebc(user_item_tables(), false);
  EXPECT_THAT(error_of([&] { ebc->forward(user_item(/*with_inverse=*/false)); }),
              HasSubstr("feature 'user' has 2 samples, 'item' 3) and no inverse_indices"));
  auto only_user = user_item(false).with_inverse_indices({{"user"}, torch::tensor({{0, 1}}, torch::kLong)});
  EXPECT_THAT(error_of([&] { ebc->forward(only_user); }), HasSubstr("inverse_indices has no row for feature 'item'"));
  auto too_far = user_item(false).with_inverse_indices({{"user", "item"}, torch::tensor({{0, 2}, {0, 1}}, torch::kLong)});
  EXPECT_THAT(error_of([&] { ebc->forward(too_far); }),
              HasSubstr("inverse_indices of feature 'user' point at sample 2 but the feature has 2 samples"));
}

TEST(VariableBatchEbcTest, FusedPathRefusesAVariableBatch) {
  EmbeddingBagCollection ebc(user_item_tables(), false);
  ebc->enable_fused_optimizer(optim::OptimizerOptions("sgd", 0.1));
  EXPECT_THAT(error_of([&] { ebc->forward(user_item()); }), HasSubstr("training.fused_embeddings: false"));
}

TEST(VariableBatchEcTest, EachFeatureKeepsItsOwnSamples) {
  EmbeddingCollection ec({EmbeddingConfig(5, 2, "t", {"user", "item"})}, false);
  auto out = ec->forward(user_item());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(torch::equal(out[0].second.lengths(), torch::tensor({1, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(out[1].second.lengths(), torch::tensor({1, 0, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(out[1].second.values(), ec->table_weight("t").index_select(0, torch::tensor({1, 2, 0}))));
}

}  // namespace variable_batch_test
}  // namespace recmod
