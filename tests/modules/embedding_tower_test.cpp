#include "recmod/modules/embedding_tower.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace embedding_tower_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::HasSubstr;

/// Interaction over pooled embeddings: sum of each row times a learnable scale.
class ScaledSumImpl : public torch::nn::Module {
 public:
  ScaledSumImpl() : scale(register_parameter("scale", torch::full({1}, 2.0))) {}
  torch::Tensor forward(const KeyedTensor& kt) { return kt.values().sum(1, /*keepdim=*/true) * scale; }
  torch::Tensor scale;
};
TORCH_MODULE(ScaledSum);

/// Interaction over sequence embeddings: number of ids per sample of the first key.
class CountIdsImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const JaggedTensorDict& d) { return d.front().second.lengths().to(torch::kFloat).unsqueeze(1); }
};
TORCH_MODULE(CountIds);

void fill(const torch::Tensor& w, double v) {
  torch::NoGradGuard no_grad;
  const_cast<torch::Tensor&>(w).fill_(v);
}

KeyedJaggedTensor kjt(std::vector<std::string> keys, std::vector<int64_t> values, std::vector<int64_t> lengths,
                      std::optional<std::vector<float>> weights = std::nullopt) {
  std::optional<torch::Tensor> w;
  if (weights) w = torch::tensor(*weights);
  return KeyedJaggedTensor::from_lengths(std::move(keys), torch::tensor(values), torch::tensor(lengths), w);
}

TEST(EmbeddingTower, EmbeddingThenInteraction) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(3, 2, "t", {"f"})}, false);
  fill(ebc->table_weight("t"), 1.0);
  EmbeddingTower tower(tower_embedding(ebc), tower_interaction(ScaledSum()));
  auto out = tower->forward(kjt({"f"}, {0, 1, 2}, {2, 1}));
  // bag 0: two rows of [1, 1] -> sum 4, * 2; bag 1: 2 * 2.
  EXPECT_TRUE(torch::allclose(out, torch::tensor({{8.0f}, {4.0f}})));
  auto sd = state_dict(*tower);
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "embedding.embedding_bags.t.weight");
  EXPECT_EQ(sd[1].first, "interaction.scale");
}

TEST(EmbeddingTower, SequenceEmbeddingsAndMismatchedInteraction) {
  EmbeddingCollection ec({EmbeddingConfig(3, 2, "t", {"f"})}, false);
  EmbeddingTower tower(tower_embedding(ec), tower_interaction(CountIds()));
  EXPECT_TRUE(torch::equal(tower->forward(kjt({"f"}, {0, 1, 2}, {0, 3})), torch::tensor({{0.0f}, {3.0f}})));
  EmbeddingTower wrong(tower_embedding(ec), tower_interaction(ScaledSum()));
  EXPECT_THAT(error_of([&] { wrong->forward(kjt({"f"}, {0}, {1})); }),
              HasSubstr("does not take a Dict[str, JaggedTensor] (sequence embeddings)"));
}

TEST(EmbeddingTowerCollection, RoutesWeightedFeaturesAndConcatenates) {
  EmbeddingBagCollection plain({EmbeddingBagConfig(3, 1, "t1", {"f"})}, false);
  EmbeddingBagCollection weighted({EmbeddingBagConfig(3, 1, "t2", {"w"})}, true);
  fill(plain->table_weight("t1"), 1.0);
  fill(weighted->table_weight("t2"), 1.0);
  EmbeddingTowerCollection towers(std::vector<EmbeddingTower>{
      EmbeddingTower(tower_embedding(plain), tower_interaction(ScaledSum())),
      EmbeddingTower(tower_embedding(weighted), tower_interaction(ScaledSum()))});
  auto features = kjt({"f"}, {0, 1, 2}, {1, 2});
  auto weighted_features = kjt({"w"}, {0, 0}, {1, 1}, std::vector<float>{3.0f, 5.0f});
  auto out = towers->forward(features, weighted_features);
  EXPECT_TRUE(torch::allclose(out, torch::tensor({{2.0f, 6.0f}, {4.0f, 10.0f}})));
  EXPECT_EQ(state_dict(*towers)[2].first, "towers.1.embedding.embedding_bags.t2.weight");
  EXPECT_THAT(error_of([&] { towers->forward(features, std::nullopt); }),
              HasSubstr("tower 1 takes weighted_features but none were given"));
}

}  // namespace embedding_tower_test
}  // namespace recmod
