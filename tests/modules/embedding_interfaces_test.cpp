#include "recmod/modules/embedding_interfaces.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/embedding_tower.h"
#include "recmod/quant/embedding_modules.h"
#include "support/custom_embedding_modules.h"
#include "support/test_util.h"

namespace recmod {
namespace embedding_interfaces_test {

using ::testing::ElementsAre;

KeyedJaggedTensor kjt(std::vector<std::string> keys, std::vector<int64_t> values, std::vector<int64_t> lengths,
                      std::optional<std::vector<float>> weights = std::nullopt) {
  std::optional<torch::Tensor> w;
  if (weights) w = torch::tensor(*weights);
  return KeyedJaggedTensor::from_lengths(std::move(keys), torch::tensor(values), torch::tensor(lengths), w);
}

/// Interaction over pooled embeddings: each row's sum.
class RowSumImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const KeyedTensor& kt) { return kt.values().sum(1, /*keepdim=*/true); }
};
TORCH_MODULE(RowSum);

/// Interaction over sequence embeddings: the sum of the first key's values per sample.
class SequenceSumImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const JaggedTensorDict& d) {
    std::vector<torch::Tensor> rows;
    for (const auto& r : d.front().second.to_dense()) rows.push_back(r.sum().reshape({1}));
    return torch::stack(rows);
  }
};
TORCH_MODULE(SequenceSum);

TEST(EmbeddingInterfaces, EmbeddingBagCollectionAnswersThroughTheInterface) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(5, 3, "t_a", {"a", "b"}), EmbeddingBagConfig(4, 2, "t_b", {"b"})},
                             /*is_weighted=*/true);
  std::shared_ptr<EmbeddingBagCollectionInterface> i = ebc.ptr();
  EXPECT_TRUE(i->is_weighted());
  ASSERT_EQ(i->embedding_bag_configs().size(), 2u);
  EXPECT_EQ(i->embedding_bag_configs()[1].name, "t_b");
  EXPECT_EQ(&i->embedding_bag_configs(), &ebc->embedding_bag_configs());
  const auto features = kjt({"a", "b"}, {0, 4, 1, 3, 2}, {2, 0, 1, 2}, std::vector<float>{1, 2, 3, 4, 0.5});
  const KeyedTensor via_interface = i->forward(features);
  const KeyedTensor direct = ebc->forward(features);
  EXPECT_EQ(via_interface.keys(), direct.keys());
  EXPECT_THAT(via_interface.keys(), ElementsAre("a", "b@t_a", "b@t_b"));
  EXPECT_TRUE(torch::equal(via_interface.values(), direct.values()));
  EXPECT_EQ(EmbeddingBagCollection({EmbeddingBagConfig(2, 2, "t", {"f"})}, false)->is_weighted(), false);
}

TEST(EmbeddingInterfaces, EmbeddingCollectionAnswersThroughTheInterface) {
  EmbeddingCollection ec({EmbeddingConfig(5, 4, "t_a", {"a", "b"}), EmbeddingConfig(3, 4, "t_b", {"b"})},
                         /*need_indices=*/true);
  std::shared_ptr<EmbeddingCollectionInterface> i = ec.ptr();
  EXPECT_TRUE(i->need_indices());
  EXPECT_EQ(i->embedding_dim(), 4);
  EXPECT_EQ(i->embedding_configs().size(), 2u);
  ASSERT_EQ(i->embedding_names_by_table().size(), 2u);
  EXPECT_THAT(i->embedding_names_by_table()[0], ElementsAre("a", "b@t_a"));
  EXPECT_THAT(i->embedding_names_by_table()[1], ElementsAre("b@t_b"));
  const auto out = i->forward(kjt({"a", "b"}, {0, 4, 1, 2}, {2, 0, 1, 1}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2].first, "b@t_b");
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>{0, 4});
  EXPECT_TRUE(torch::equal(out[0].second.values(), ec->table_weight("t_a").index_select(0, ids)));
  EXPECT_TRUE(torch::equal(out[0].second.weights().to(torch::kLong), ids));
  EXPECT_FALSE(EmbeddingCollection({EmbeddingConfig(2, 2, "t", {"f"})}, false)->need_indices());
}

TEST(EmbeddingInterfaces, QuantizedCollectionsImplementThem) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(6, 8, "t", {"f"})}, false);
  quant::QuantConfig config;
  std::shared_ptr<EmbeddingBagCollectionInterface> qebc = quant::EmbeddingBagCollectionImpl::from_float(*ebc, config);
  qebc->eval();
  EXPECT_FALSE(qebc->is_weighted());
  EXPECT_EQ(qebc->embedding_bag_configs()[0].data_type, DataType::INT8);
  const auto features = kjt({"f"}, {0, 5, 3}, {2, 1});
  torch::NoGradGuard no_grad;
  const KeyedTensor q = qebc->forward(features);
  EXPECT_THAT(q.keys(), ElementsAre("f"));
  // INT8 rows: within a quantization step of the float lookup.
  EXPECT_TRUE(torch::allclose(q.values(), ebc->forward(features).values(), 0, 0.02));

  EmbeddingCollection ec({EmbeddingConfig(6, 4, "t_a", {"a"}), EmbeddingConfig(6, 4, "t_b", {"a"})}, true);
  std::shared_ptr<EmbeddingCollectionInterface> qec = quant::EmbeddingCollectionImpl::from_float(*ec, config);
  qec->eval();
  EXPECT_TRUE(qec->need_indices());
  EXPECT_EQ(qec->embedding_dim(), 4);
  EXPECT_EQ(qec->embedding_names_by_table(), ec->embedding_names_by_table());
  EXPECT_EQ(qec->forward(kjt({"a"}, {1, 2}, {1, 1})).size(), 2u);
}

TEST(EmbeddingInterfaces, CustomModuleIsAModuleOfItsOwnAndCloneableBeforeTorch22) {
  test::MaxPooledEmbeddingBagCollection max(std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 2, "t", {})});
  {
    torch::NoGradGuard no_grad;
    max->weight(0).copy_(torch::tensor({{1.0f, 9.0f}, {5.0f, -1.0f}, {3.0f, 3.0f}, {0.0f, 0.0f}}));
  }
  // Feature "t" (empty feature_names stand for [name]); bags [0, 1, 2], [], [3].
  const auto features = kjt({"t"}, {0, 1, 2, 3}, {3, 0, 1});
  const KeyedTensor out = max->forward(features);
  EXPECT_THAT(out.keys(), ElementsAre("t"));
  EXPECT_TRUE(torch::equal(out.values(), torch::tensor({{5.0f, 9.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}})));
  EXPECT_THAT(test::state_dict_keys(*max), ElementsAre("weight_t"));
  if (TORCH_VERSION_MAJOR < 2) {
    EXPECT_TRUE(test::kCloneableSharesModule);  // libtorch 1.x: Cloneable is virtual
  }
  if (test::kCloneableSharesModule) {
    // Cloneable through the shared virtual Module base: a deep copy.
    auto copy = std::dynamic_pointer_cast<test::MaxPooledEmbeddingBagCollectionImpl>(max->clone());
    ASSERT_NE(copy, nullptr);
    EXPECT_TRUE(torch::equal(copy->forward(features).values(), out.values()));
    {
      torch::NoGradGuard no_grad;
      copy->weight(0).fill_(-7.0f);
    }
    EXPECT_TRUE(torch::equal(max->forward(features).values(), out.values()));
  } else {
    EXPECT_THROW(max->clone(), c10::Error);  // PyTorch >= 2.2: not Cloneable
  }
  // The built-in collection is not Cloneable (as in torch: Module::clone throws).
  EmbeddingBagCollection ebc({EmbeddingBagConfig(2, 2, "t", {"f"})}, false);
  EXPECT_THROW(ebc->clone(), c10::Error);
}

TEST(EmbeddingInterfaces, CustomModulesPlugIntoEmbeddingTower) {
  test::MaxPooledEmbeddingBagCollection max(std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 2, "t", {"f"})});
  {
    torch::NoGradGuard no_grad;
    max->weight(0).copy_(torch::tensor({{1.0f, 9.0f}, {5.0f, -1.0f}, {3.0f, 3.0f}, {0.0f, 0.0f}}));
  }
  EmbeddingTower tower(tower_embedding(max.ptr()), tower_interaction(RowSum()));
  const auto features = kjt({"f"}, {0, 1, 3}, {2, 1});
  // max rows: [5, 9] -> 14; [0, 0] -> 0.
  EXPECT_TRUE(torch::equal(tower->forward(features), torch::tensor({{14.0f}, {0.0f}})));
  EXPECT_THAT(test::state_dict_keys(*tower), ElementsAre("embedding.weight_t"));
  auto out = tower->forward(features);
  out.sum().backward();
  EXPECT_TRUE(max->weight(0).grad().defined());

  // A weighted custom module is fed weighted_features in a tower collection.
  EmbeddingBagCollection inner({EmbeddingBagConfig(3, 2, "w", {"g"})}, /*is_weighted=*/true);
  {
    torch::NoGradGuard no_grad;
    inner->table_weight("w").fill_(1.0f);
  }
  test::ScaledEmbeddingBagCollection scaled(inner, 3.0);
  EmbeddingTowerCollection towers(std::vector<EmbeddingTower>{
      EmbeddingTower(tower_embedding(scaled.ptr()), tower_interaction(RowSum()))});
  const auto weighted = kjt({"g"}, {0, 2}, {1, 1}, std::vector<float>{2, 0.5});
  // 3 * (w * [1, 1]) summed: 12, 3.
  EXPECT_TRUE(torch::allclose(towers->forward(std::nullopt, weighted), torch::tensor({{12.0f}, {3.0f}})));
  EXPECT_THROW(towers->forward(weighted, std::nullopt), InputError);

  EmbeddingCollection ec({EmbeddingConfig(3, 2, "s", {"h"})}, false);
  {
    torch::NoGradGuard no_grad;
    ec->table_weight("s").fill_(1.0f);
  }
  test::ScaledEmbeddingCollection scaled_ec(ec, -2.0);
  EmbeddingTower sequence_tower(tower_embedding(scaled_ec.ptr()), tower_interaction(SequenceSum()));
  EXPECT_TRUE(torch::equal(sequence_tower->forward(kjt({"h"}, {0, 1, 2}, {2, 1})), torch::tensor({{-8.0f}, {-4.0f}})));
  EXPECT_THAT(test::state_dict_keys(*sequence_tower), ElementsAre("embedding.ec.embeddings.s.weight"));
}

}  // namespace embedding_interfaces_test
}  // namespace recmod
