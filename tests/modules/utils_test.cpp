#include "recmod/modules/utils.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ConstructJaggedTensors, SplitsRowsPerKeyAndMergesSharedNames) {
  // B = 2; keys a (lengths 1, 1), b (2, 0), c (0, 1), each its own name.
  auto features = KeyedJaggedTensor::from_lengths({"a", "b", "c"}, torch::tensor({5, 6, 7, 8, 9}),
                                                  torch::tensor({1, 1, 2, 0, 0, 1}));
  auto emb = torch::arange(10.0).view({5, 2});
  auto out = construct_jagged_tensors(emb, features, {"a", "b", "c"}, /*need_indices=*/true);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].first, "b");
  EXPECT_TRUE(torch::equal(out[1].second.values(), torch::tensor({{4.0, 5.0}, {6.0, 7.0}})));
  EXPECT_TRUE(torch::equal(out[1].second.lengths(), torch::tensor({2, 0})));
  EXPECT_TRUE(torch::equal(out[1].second.weights(), torch::tensor({7, 8})));
  EXPECT_TRUE(torch::equal(out[2].second.lengths(), torch::tensor({0, 1})));

  // Two keys under one name (column-wise parts): concatenated along dim 1.
  auto two = KeyedJaggedTensor::from_lengths({"p", "q"}, torch::tensor({1, 2, 3, 4}), torch::tensor({1, 1, 1, 1}));
  auto merged = construct_jagged_tensors(torch::arange(8.0).view({4, 2}), two, {"x", "x"});
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_TRUE(torch::equal(merged[0].second.values(), torch::tensor({{0.0, 1.0, 4.0, 5.0}, {2.0, 3.0, 6.0, 7.0}})));
  EXPECT_FALSE(merged[0].second.has_weights());
}

TEST(ConstructJaggedTensors, RejectsWrongShapes) {
  auto features = KeyedJaggedTensor::from_lengths({"a"}, torch::tensor({1, 2}), torch::tensor({2}));
  try {
    construct_jagged_tensors(torch::zeros({3, 2}), features, {"a"});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected embeddings of shape (2, D), got [3, 2]"));
  }
}

TEST(ModuleUtils, OutputDimensions) {
  EXPECT_EQ(pooled_embedding_dim({EmbeddingBagConfig(3, 4, "t", {"a", "b"}), EmbeddingBagConfig(3, 5, "u")}), 13);
  torch::nn::Linear linear(6, 3);
  EXPECT_EQ(get_module_output_dimension(linear, 6), 3);
  try {
    check_module_output_dimension(linear, 6, 4, "over_arch");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("over_arch: expected output dimension 4, got 3"));
  }
}

}  // namespace
}  // namespace recmod
