#include "recmod/modules/utils.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "support/test_util.h"

namespace recmod {
namespace utils_test {

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

TEST(ConstructJaggedTensors, TorchRecsFurtherArguments) {
  // Column-wise parts of "x" arriving as (q, p): the permutation puts p first.
  auto two = KeyedJaggedTensor::from_lengths({"q", "p"}, torch::tensor({1, 2, 3, 4}), torch::tensor({1, 1, 1, 1}));
  ConstructJaggedTensorsOptions options;
  options.features_to_permute_indices["x"] = {1, 0};
  auto merged = construct_jagged_tensors(torch::arange(8.0).view({4, 2}), two, {"x", "x"}, options);
  EXPECT_TRUE(torch::equal(merged[0].second.values(), torch::tensor({{4.0, 5.0, 0.0, 1.0}, {6.0, 7.0, 2.0, 3.0}})));
  options.features_to_permute_indices["x"] = {1, 1};
  EXPECT_THAT(test::error_of<InputError>([&] { construct_jagged_tensors(torch::zeros({4, 2}), two, {"x", "x"}, options); }),
              HasSubstr("must be a permutation of 0..1, got 1 at 1"));

  // A lookup over deduplicated ids (rows for ids 5, 6) expanded back by
  // reverse_indices onto the original features (ids 5, 6, 5).
  auto original = KeyedJaggedTensor::from_lengths({"a"}, torch::tensor({5, 6, 5}), torch::tensor({2, 1}));
  auto unique = KeyedJaggedTensor::from_lengths({"a"}, torch::tensor({5, 6}), torch::tensor({2, 0}));
  ConstructJaggedTensorsOptions dedup;
  dedup.need_indices = true;
  dedup.original_features = original;
  dedup.reverse_indices = torch::tensor({0, 1, 0}, torch::kInt);
  auto out = construct_jagged_tensors(torch::tensor({{1.0}, {2.0}}), unique, {"a"}, dedup);
  EXPECT_TRUE(torch::equal(out[0].second.values(), torch::tensor({{1.0}, {2.0}, {1.0}})));
  EXPECT_TRUE(torch::equal(out[0].second.lengths(), torch::tensor({2, 1})));
  EXPECT_TRUE(torch::equal(out[0].second.weights(), torch::tensor({5, 6, 5})));
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

}  // namespace utils_test
}  // namespace recmod
