#include "recmod/modules/feature_processor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/fp_embedding_modules.h"

namespace recmod {
namespace {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

void assign(torch::Tensor p, torch::Tensor v) {
  torch::NoGradGuard no_grad;
  p.copy_(v);
}

KeyedJaggedTensor kjt(std::vector<std::string> keys, std::vector<int64_t> values, std::vector<int64_t> lengths) {
  return KeyedJaggedTensor::from_lengths(std::move(keys), torch::tensor(values), torch::tensor(lengths));
}

TEST(FeatureProcessor, OffsetsRange) {
  auto r = offsets_range(torch::tensor({0, 2, 2, 5}), 5);
  EXPECT_TRUE(torch::equal(r, torch::tensor({0, 1, 0, 1, 2})));
  EXPECT_EQ(offsets_range(torch::tensor({0, 0}), 0).numel(), 0);
}

TEST(PositionWeightedModule, ReplacesWeightsByPosition) {
  PositionWeightedModule pw(3);
  EXPECT_TRUE(torch::equal(pw->position_weight, torch::ones({3})));
  assign(pw->position_weight, torch::tensor({0.5f, 2.0f, 4.0f}));
  auto jt = JaggedTensor::from_lengths(torch::tensor({7, 8, 9, 1}), torch::tensor({2, 0, 1, 1}),
                                       torch::tensor({9.0f, 9.0f, 9.0f, 9.0f}));
  auto out = pw->forward(jt);
  EXPECT_TRUE(torch::equal(out.values(), jt.values()));
  EXPECT_TRUE(torch::equal(out.weights(), torch::tensor({0.5f, 2.0f, 0.5f, 0.5f})));
  EXPECT_THAT(error_of([&] { pw->forward(JaggedTensor::from_lengths(torch::tensor({1, 2, 3, 4}), torch::tensor({4}))); }),
              HasSubstr("PositionWeightedModule: a bag has 4 ids but max_feature_length is 3"));
  EXPECT_THAT(error_of([] { PositionWeightedModule(0); }), HasSubstr("must be > 0, got 0"));
}

TEST(PositionWeightedModule, GradientSumsOverPositions) {
  PositionWeightedModule pw(3);
  auto out = pw->forward(JaggedTensor::from_lengths(torch::tensor({1, 2, 3}), torch::tensor({2, 1})));
  out.weights().sum().backward();
  EXPECT_TRUE(torch::equal(pw->position_weight.grad(), torch::tensor({2.0f, 1.0f, 0.0f})));
}

TEST(PositionWeightedModuleCollection, OtherFeaturesGetOne) {
  PositionWeightedModuleCollection pw(FeatureLengths{{"b", 2}, {"a", 3}});
  assign(pw->position_weight("a"), torch::tensor({3.0f, 4.0f, 5.0f}));
  // B = 2; keys a, c (no position weights).
  auto out = pw->forward(kjt({"a", "c"}, {1, 2, 3, 4, 5}, {3, 0, 1, 1}));
  EXPECT_THAT(out.keys(), ElementsAre("a", "c"));
  EXPECT_TRUE(torch::equal(out.weights(), torch::tensor({3.0f, 4.0f, 5.0f, 1.0f, 1.0f})));
  StateDict sd = state_dict(*pw);
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "position_weights.b");  // the caller's order
  EXPECT_EQ(sd[1].first, "position_weights.a");
  EXPECT_THAT(error_of([&] { pw->forward(kjt({"b"}, {1, 2, 3}, {3})); }),
              HasSubstr("feature 'b': a bag has 3 ids but max_feature_length is 2"));
}

TEST(PositionWeightedProcessor, DropsFeaturesWithoutPositionWeightsWhenMixed) {
  PositionWeightedProcessor pw(FeatureLengths{{"a", 2}, {"b", 2}});
  assign(pw->position_weight("a"), torch::tensor({1.0f, 2.0f}));
  assign(pw->position_weight("b"), torch::tensor({3.0f, 4.0f}));
  auto mixed = pw->forward(kjt({"b", "x", "a"}, {1, 2, 3, 4, 5}, {2, 0, 1, 1, 0, 1}));
  EXPECT_THAT(mixed.keys(), ElementsAre("b", "a"));
  EXPECT_TRUE(torch::equal(mixed.values(), torch::tensor({1, 2, 5})));
  EXPECT_TRUE(torch::equal(mixed.lengths(), torch::tensor({2, 0, 0, 1})));
  EXPECT_TRUE(torch::equal(mixed.weights(), torch::tensor({3.0f, 4.0f, 1.0f})));
  auto plain = kjt({"x"}, {1, 2}, {1, 1});
  auto untouched = pw->forward(plain);
  EXPECT_FALSE(untouched.has_weights());
  EXPECT_THAT(untouched.keys(), ElementsAre("x"));
}

TEST(FeatureProcessedEmbeddingBagCollection, DictFormWeightsByPosition) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(4, 1, "t", {"f", "g"})}, /*is_weighted=*/true);
  {
    torch::NoGradGuard no_grad;
    ebc->table_weight("t").copy_(torch::tensor({{1.0f}, {10.0f}, {100.0f}, {1000.0f}}));
  }
  PositionWeightedModule pf(2);
  assign(pf->position_weight, torch::tensor({1.0f, 0.5f}));
  FeatureProcessedEmbeddingBagCollection fp(ebc, FeatureProcessorDict{{"f", pf}});
  // f: [1, 2] -> 10 + 0.5 * 100; g (no processor, weight 1): [3, 3] -> 2000.
  auto out = fp->forward(kjt({"f", "g"}, {1, 2, 3, 3}, {2, 2}));
  EXPECT_TRUE(torch::allclose(out.values(), torch::tensor({{60.0f, 2000.0f}})));
  auto keys = state_dict(*fp);
  EXPECT_EQ(keys[0].first, "_embedding_bag_collection.embedding_bags.t.weight");
  EXPECT_EQ(keys[1].first, "_feature_processors.f.position_weight");
  EXPECT_THAT(error_of([] {
                FeatureProcessedEmbeddingBagCollection(EmbeddingBagCollection({EmbeddingBagConfig(2, 1, "t")}, false),
                                                       FeatureProcessorDict{});
              }),
              HasSubstr("must be weighted"));
}

TEST(FeatureProcessedEmbeddingBagCollection, CollectionFormKeys) {
  FeatureProcessedEmbeddingBagCollection fp(EmbeddingBagCollection({EmbeddingBagConfig(4, 1, "t", {"f"})}, true),
                                            PositionWeightedModuleCollection(FeatureLengths{{"f", 3}}));
  auto keys = state_dict(*fp);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1].first, "_feature_processors.position_weights.f");
  auto out = fp->forward(kjt({"f"}, {0, 1}, {2}));
  out.values().sum().backward();
  EXPECT_TRUE(fp->named_parameters()["_feature_processors.position_weights.f"].grad().defined());
}

}  // namespace
}  // namespace recmod
