#include "recmod/modules/feature_processor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/fp_embedding_modules.h"

namespace recmod {
namespace feature_processor_test {

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

TEST(PositionWeightedModule, TheReferencesDictSignature) {
  PositionWeightedModule pw(FeatureLengths{{"f1", 2}, {"f2", 3}});
  std::vector<std::string> keys;
  for (const auto& kv : state_dict(*pw)) keys.push_back(kv.first);
  EXPECT_THAT(keys, ElementsAre("position_weights.f1", "position_weights.f2"));  // TorchRec v0.6's keys
  assign(state_dict(*pw).at(1).second, torch::tensor({0.5f, 2.0f, 4.0f}));
  const JaggedTensorDict in = {
      {"other", JaggedTensor::from_lengths(torch::tensor({5}), torch::tensor({1}))},
      {"f2", JaggedTensor::from_lengths(torch::tensor({7, 8, 9}), torch::tensor({3}))},
      {"f1", JaggedTensor::from_lengths(torch::tensor({1, 2}), torch::tensor({1, 1}))}};
  const JaggedTensorDict out = pw->forward(in);
  ASSERT_EQ(out.size(), 3u);  // the input's order; a feature without weights passes through
  EXPECT_EQ(out[0].first, "other");
  EXPECT_FALSE(out[0].second.has_weights());
  EXPECT_EQ(out[1].first, "f2");
  EXPECT_TRUE(torch::equal(out[1].second.weights(), torch::tensor({0.5f, 2.0f, 4.0f})));
  EXPECT_TRUE(torch::equal(out[2].second.weights(), torch::tensor({1.0f, 1.0f})));
  EXPECT_THAT(error_of([&] { pw->forward(JaggedTensorDict{in[0]}); }),
              HasSubstr("feature 'f1' is missing from the input [other]"));
  EXPECT_THAT(error_of([&] { pw->forward(in[2].second); }), HasSubstr("takes a dict of JaggedTensors"));
  EXPECT_THAT(error_of([] { PositionWeightedModule(3)->forward(JaggedTensorDict{}); }),
              HasSubstr("built for one feature, it takes a JaggedTensor"));
  // Through the base classes, as a custom processor would plug in.
  BaseFeatureProcessor& base = *pw;
  EXPECT_EQ(base.forward(in).size(), 3u);
  PositionWeightedModuleCollection collection(FeatureLengths{{"f1", 2}});
  BaseGroupedFeatureProcessor& grouped = *collection;
  EXPECT_TRUE(torch::equal(grouped.forward(kjt({"f1"}, {1, 2}, {2})).weights(), torch::ones({2})));
}

TEST(PositionWeightedModule, UpdateFeaturesReplacesInPlaceAndAppendsNewKeys) {
  const auto a = JaggedTensor::from_lengths(torch::tensor({1}), torch::tensor({1}));
  const auto b = JaggedTensor::from_lengths(torch::tensor({2, 3}), torch::tensor({2}));
  const JaggedTensorDict out = position_weighted_module_update_features({{"x", a}, {"y", a}}, {{"y", b}, {"z", b}});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].first, "y");
  EXPECT_EQ(out[1].second.values().numel(), 2);
  EXPECT_EQ(out[2].first, "z");
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

}  // namespace feature_processor_test
}  // namespace recmod
