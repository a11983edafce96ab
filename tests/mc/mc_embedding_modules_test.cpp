#include "recmod/mc/mc_embedding_modules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "support/custom_embedding_modules.h"
#include "support/test_util.h"

namespace recmod {
namespace mc_embedding_modules_test {

using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

ManagedCollisionCollection lfu_mcc(const std::vector<ManagedTableConfig>& tables) {
  ManagedCollisionModules modules;
  for (const auto& t : tables)
    modules.emplace_back(t.name, std::make_shared<MCHManagedCollisionModuleImpl>(MCHManagedCollisionModuleOptions(
                                     t.num_embeddings, std::make_shared<LFU_EvictionPolicy>(), 1)));
  return ManagedCollisionCollection(modules, tables);
}

/// One SUM table t1 (4 rows, dim 2, feature f1) whose row r is filled with
/// 10 + r, init bounds [0.25, 0.5]; one LFU module evicting every batch.
ManagedCollisionEmbeddingBagCollection make_mc_ebc(bool reset_evicted_rows, bool return_remapped = false) {
  EmbeddingBagConfig t1(4, 2, "t1", {"f1"});
  t1.weight_init_min = 0.25;
  t1.weight_init_max = 0.5;
  EmbeddingBagCollection ebc(std::vector<EmbeddingBagConfig>{t1}, /*is_weighted=*/false);
  {
    torch::NoGradGuard no_grad;
    ebc->table_weight("t1").copy_(torch::arange(10.0, 14.0).unsqueeze(1).expand({4, 2}));
  }
  auto mcc = lfu_mcc(managed_table_configs(ebc->embedding_bag_configs()));
  return ManagedCollisionEmbeddingBagCollection(ebc, mcc, return_remapped, reset_evicted_rows);
}

KeyedJaggedTensor one_sample(std::vector<int64_t> ids) {
  const auto n = static_cast<int64_t>(ids.size());
  return KeyedJaggedTensor::from_lengths({"f1"}, longs(std::move(ids)), longs({n}));
}

TEST(ManagedCollisionEmbeddingBagCollection, ByDefaultEvictedRowsKeepTheirValuesAsInTorchRec) {
  auto m = make_mc_ebc(/*reset_evicted_rows=*/false);
  m->train();
  auto [pooled, remapped] = m->forward(one_sample({7, 7, 8}));
  EXPECT_FALSE(remapped.has_value());
  // 7 -> slot 1, 8 -> slot 2 (taken over this batch): 2 * 11 + 12.
  EXPECT_TRUE(torch::allclose(pooled.values(), torch::full({1, 2}, 34.0)));
  EXPECT_TRUE(torch::equal(m->embedding_bag_collection()->table_weight("t1"),
                           torch::arange(10.0, 14.0).unsqueeze(1).expand({4, 2})));
}

TEST(ManagedCollisionEmbeddingBagCollection, ResetEvictedRowsRedrawsExactlyThoseRows) {
  auto m = make_mc_ebc(/*reset_evicted_rows=*/true, /*return_remapped=*/true);
  m->train();
  auto [pooled, remapped] = m->forward(one_sample({7, 7, 8}));
  // The lookup precedes the reset: old rows.
  EXPECT_TRUE(torch::allclose(pooled.values(), torch::full({1, 2}, 34.0)));
  ASSERT_TRUE(remapped.has_value());
  EXPECT_TRUE(torch::equal(remapped->values(), longs({1, 1, 2})));
  const torch::Tensor w = m->embedding_bag_collection()->table_weight("t1").clone();
  EXPECT_TRUE(torch::equal(w[0], torch::full({2}, 10.0)));
  EXPECT_TRUE(torch::equal(w[3], torch::full({2}, 13.0)));
  for (int64_t r : {1, 2}) {
    EXPECT_TRUE((w[r] >= 0.25).all().item<bool>()) << w[r];
    EXPECT_TRUE((w[r] <= 0.5).all().item<bool>()) << w[r];
  }
  // A round that takes over no slot resets nothing.
  m->forward(one_sample({7}));
  EXPECT_TRUE(torch::equal(m->embedding_bag_collection()->table_weight("t1"), w));
}

TEST(ManagedCollisionEmbeddingBagCollection, EvictFunctionResetsOnlyListedTables) {
  EmbeddingBagCollection ebc(
      std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 3, "a", {"fa"}), EmbeddingBagConfig(4, 3, "b", {"fb"})},
      false);
  {
    torch::NoGradGuard no_grad;
    ebc->table_weight("a").fill_(5.0);
    ebc->table_weight("b").fill_(5.0);
  }
  evict({{"a", longs({3})}, {"b", std::nullopt}}, *ebc, /*reset_evicted_rows=*/true);
  const torch::Tensor a = ebc->table_weight("a");
  EXPECT_TRUE(torch::equal(a.slice(0, 0, 3), torch::full({3, 3}, 5.0)));
  EXPECT_TRUE((a[3].abs() <= 0.5).all().item<bool>());  // default bound sqrt(1/4)
  EXPECT_TRUE(torch::equal(ebc->table_weight("b"), torch::full({4, 3}, 5.0)));
  evict({{"a", longs({0})}}, *ebc);  // TorchRec's no-op
  EXPECT_TRUE(torch::equal(ebc->table_weight("a")[0], torch::full({3}, 5.0)));
}

TEST(ManagedCollisionEmbeddingBagCollection, StateDictKeysAndTableMismatch) {
  auto m = make_mc_ebc(false);
  std::vector<std::string> keys;
  for (const auto& kv : state_dict(*m)) keys.push_back(kv.first);
  EXPECT_EQ(keys.front(), "_embedding_bag_collection.embedding_bags.t1.weight");
  EXPECT_EQ(keys.back(), "_managed_collision_collection._managed_collision_modules.t1._mch_counts");

  EmbeddingBagCollection ebc(std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 2, "t1", {"f1"})}, false);
  try {
    ManagedCollisionEmbeddingBagCollection(ebc, lfu_mcc({{"t1", 4, {"f2"}}}));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the EmbeddingBagCollection and the ManagedCollisionCollection must have the "
                                    "same tables; got [t1(4 rows, [f1])] and [t1(4 rows, [f2])]"));
  }
}

TEST(ManagedCollisionEmbeddingCollection, RegistersTheCollectionTwiceLikeTorchRec) {
  EmbeddingCollection ec(std::vector<EmbeddingConfig>{EmbeddingConfig(4, 2, "t1", {"f1"})}, false);
  ManagedCollisionEmbeddingCollection m(ec, lfu_mcc(managed_table_configs(ec->embedding_configs())));
  std::vector<std::string> keys;
  for (const auto& kv : state_dict(*m)) keys.push_back(kv.first);
  EXPECT_THAT(keys, ::testing::Contains("_embedding_module.embeddings.t1.weight"));
  EXPECT_THAT(keys, ::testing::Contains("_embedding_collection.embeddings.t1.weight"));
}

TEST(ManagedCollisionEmbeddingCollection, UniqueParametersListsTheWeightOnce) {
  EmbeddingCollection ec(std::vector<EmbeddingConfig>{EmbeddingConfig(4, 2, "t1", {"f1"})}, false);
  ManagedCollisionEmbeddingCollection m(ec, lfu_mcc(managed_table_configs(ec->embedding_configs())));
  // _current_iter_tensor and the weight, which parameters() lists twice.
  const auto all = m->parameters();
  const auto unique = m->unique_parameters();
  EXPECT_EQ(unique.size(), 2u);
  EXPECT_EQ(all.size(), 3u);
}

TEST(ManagedCollisionEmbeddingCollection, LooksUpRemappedIdsAndResetsEvictedRows) {
  EmbeddingConfig t1(4, 2, "t1", {"f1"});
  t1.weight_init_min = -1.0;
  t1.weight_init_max = -0.5;
  EmbeddingCollection ec(std::vector<EmbeddingConfig>{t1}, false);
  {
    torch::NoGradGuard no_grad;
    ec->table_weight("t1").fill_(3.0);
  }
  ManagedCollisionEmbeddingCollection m(ec, lfu_mcc(managed_table_configs(ec->embedding_configs())),
                                        /*return_remapped_features=*/true, /*reset_evicted_rows=*/true);
  m->train();
  auto [embeddings, remapped] = m->forward(one_sample({9}));
  ASSERT_EQ(embeddings.size(), 1u);
  EXPECT_TRUE(torch::equal(embeddings[0].second.values(), torch::full({1, 2}, 3.0)));
  ASSERT_TRUE(remapped.has_value());
  EXPECT_TRUE(torch::equal(remapped->values(), longs({2})));  // the one free slot taken: 2
  const torch::Tensor w = ec->table_weight("t1");
  EXPECT_TRUE(((w[2] >= -1.0) & (w[2] <= -0.5)).all().item<bool>());
  EXPECT_TRUE(torch::equal(w.index({longs({0, 1, 3})}), torch::full({3, 2}, 3.0)));
}

// ---- custom embedding modules (EmbeddingBagCollectionInterface / EmbeddingCollectionInterface)

/// make_mc_ebc's table (row r = 10 + r) inside a module that doubles the output.
std::shared_ptr<test::ScaledEmbeddingBagCollectionImpl> doubled_table() {
  EmbeddingBagCollection ebc(std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 2, "t1", {"f1"})}, false);
  {
    torch::NoGradGuard no_grad;
    ebc->table_weight("t1").copy_(torch::arange(10.0, 14.0).unsqueeze(1).expand({4, 2}));
  }
  return std::make_shared<test::ScaledEmbeddingBagCollectionImpl>(ebc, 2.0);
}

TEST(ManagedCollisionEmbeddingBagCollection, TakesAnyEmbeddingBagCollectionInterface) {
  auto custom = doubled_table();
  ManagedCollisionEmbeddingBagCollection m(custom, lfu_mcc(managed_table_configs(custom->embedding_bag_configs())),
                                           /*return_remapped_features=*/true);
  m->train();
  auto [pooled, remapped] = m->forward(one_sample({7, 7, 8}));
  // The remapped ids reach the custom module: 2 * (2 * 11 + 12).
  EXPECT_TRUE(torch::allclose(pooled.values(), torch::full({1, 2}, 68.0)));
  ASSERT_TRUE(remapped.has_value());
  EXPECT_TRUE(torch::equal(remapped->values(), longs({1, 1, 2})));
  EXPECT_EQ(m->embedding_module().get(), custom.get());
  const auto keys = test::state_dict_keys(*m);
  EXPECT_EQ(keys.front(), "_embedding_bag_collection.ebc.embedding_bags.t1.weight");
  EXPECT_EQ(keys.back(), "_managed_collision_collection._managed_collision_modules.t1._mch_counts");
  // Through the base class too.
  BaseManagedCollisionEmbeddingCollection<EmbeddingBagCollectionInterface>& base = *m;
  EXPECT_TRUE(torch::allclose(base.forward(one_sample({7})).first.values(), torch::full({1, 2}, 22.0)));
  EXPECT_TRUE(base.return_remapped_features());
}

TEST(ManagedCollisionEmbeddingBagCollection, WhatNeedsTheConcreteCollectionSaysSo) {
  auto custom = doubled_table();
  auto mcc = lfu_mcc(managed_table_configs(custom->embedding_bag_configs()));
  ManagedCollisionEmbeddingBagCollection m(custom, mcc);
  EXPECT_THAT(test::error_of<InputError>([&] { m->embedding_bag_collection(); }),
              HasSubstr("not an EmbeddingBagCollection; use embedding_module()"));
  EXPECT_THAT(test::error_of<InputError>([&] { m->set_reset_evicted_rows(true); }),
              HasSubstr("reset_evicted_rows re-draws the evicted rows of the tables, which needs an "
                        "EmbeddingBagCollection (its table_weight); "));
  EXPECT_FALSE(m->reset_evicted_rows());
  EXPECT_THROW(ManagedCollisionEmbeddingBagCollection(custom, mcc, false, /*reset_evicted_rows=*/true), InputError);
  EXPECT_THAT(test::error_of<InputError>([&] { evict({{"t1", longs({0})}}, *custom, /*reset_evicted_rows=*/true); }),
              HasSubstr("resetting evicted rows needs an EmbeddingBagCollection"));
  evict({{"t1", longs({0})}}, *custom);  // TorchRec's no-op
  // The table check reads the interface's configs.
  EXPECT_THAT(test::error_of<InputError>([&] { ManagedCollisionEmbeddingBagCollection(custom, lfu_mcc({{"t1", 4, {"f2"}}})); }),
              HasSubstr("must have the same tables; got [t1(4 rows, [f1])] and [t1(4 rows, [f2])]"));
  // The concrete collection is its own embedding_module().
  auto plain = make_mc_ebc(false);
  EXPECT_EQ(plain->embedding_module().get(), plain->embedding_bag_collection().get());
}

TEST(ManagedCollisionEmbeddingCollection, TakesAnyEmbeddingCollectionInterface) {
  EmbeddingCollection ec(std::vector<EmbeddingConfig>{EmbeddingConfig(4, 2, "t1", {"f1"})}, false);
  {
    torch::NoGradGuard no_grad;
    ec->table_weight("t1").copy_(torch::arange(10.0, 14.0).unsqueeze(1).expand({4, 2}));
  }
  auto custom = std::make_shared<test::ScaledEmbeddingCollectionImpl>(ec, -1.0);
  ManagedCollisionEmbeddingCollection m(custom, lfu_mcc(managed_table_configs(custom->embedding_configs())),
                                        /*return_remapped_features=*/true);
  m->train();
  auto [embeddings, remapped] = m->forward(one_sample({7, 8}));
  ASSERT_TRUE(remapped.has_value());
  ASSERT_EQ(embeddings.size(), 1u);
  // The custom module looked up the remapped slots (row r = 10 + r), negated.
  const torch::Tensor slots = remapped->values().to(torch::kFloat).unsqueeze(1).expand({2, 2});
  EXPECT_TRUE(torch::equal(embeddings[0].second.values(), -(slots + 10.0)));
  EXPECT_FALSE(torch::equal(remapped->values(), longs({7, 8})));
  const auto keys = test::state_dict_keys(*m);
  EXPECT_THAT(keys, ::testing::Contains("_embedding_module.ec.embeddings.t1.weight"));
  EXPECT_THAT(keys, ::testing::Contains("_embedding_collection.ec.embeddings.t1.weight"));
  EXPECT_EQ(keys.front().rfind("_managed_collision_collection.", 0), 0u);
  EXPECT_EQ(m->unique_parameters().size(), 2u);
  EXPECT_THAT(test::error_of<InputError>([&] { m->embedding_collection(); }),
              HasSubstr("not an EmbeddingCollection"));
  EXPECT_THROW(m->set_reset_evicted_rows(true), InputError);
}

}  // namespace mc_embedding_modules_test
}  // namespace recmod
