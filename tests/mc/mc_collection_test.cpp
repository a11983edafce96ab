#include "recmod/mc/mc_collection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace mc_collection_test {

using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

std::shared_ptr<ManagedCollisionModuleImpl> lfu_module(int64_t zch_size) {
  return std::make_shared<MCHManagedCollisionModuleImpl>(
      MCHManagedCollisionModuleOptions(zch_size, std::make_shared<LFU_EvictionPolicy>(), 1));
}

/// One LFU module of zch_size rows for table t1, and the given tables.
ManagedCollisionCollection make_mcc(int64_t zch_size, std::vector<ManagedTableConfig> tables) {
  return ManagedCollisionCollection(ManagedCollisionModules{{"t1", lfu_module(zch_size)}}, std::move(tables));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(ManagedCollisionCollection, FeaturesOfATableShareItsModuleAndOthersPassThrough) {
  auto mcc = make_mcc(4, {{"t1", 4, {"f1", "f2"}}});
  mcc->train();
  // B = 1; keys in an order unlike the table's.
  auto kjt = KeyedJaggedTensor::from_lengths({"f2", "fx", "f1"}, longs({7, 100, 7, 8, 8}), longs({1, 1, 3}));
  const KeyedJaggedTensor out = mcc->forward(kjt);
  EXPECT_EQ(out.keys(), (std::vector<std::string>{"f2", "fx", "f1"}));
  EXPECT_TRUE(torch::equal(out.lengths(), longs({1, 1, 3})));
  // One history for f1 and f2: 7 and 8 seen twice each fill two slots (7 -> 1,
  // 8 -> 2); fx is not managed and keeps its raw id.
  EXPECT_TRUE(torch::equal(out.values(), longs({1, 100, 1, 2, 2})));
  const TableEvictions ev = mcc->evict();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, "t1");
  ASSERT_TRUE(ev[0].second.has_value());
  EXPECT_TRUE(torch::equal(*ev[0].second, longs({1, 2})));
  EXPECT_FALSE(mcc->evict()[0].second.has_value());
}

TEST(ManagedCollisionCollection, StateDictKeysFollowTorchRec) {
  auto mcc = make_mcc(4, {{"t1", 4, {"f1"}}});
  std::vector<std::string> keys;
  for (const auto& kv : state_dict(*mcc)) keys.push_back(kv.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"_managed_collision_modules.t1._current_iter_tensor",
                                            "_managed_collision_modules.t1._mch_sorted_raw_ids",
                                            "_managed_collision_modules.t1._mch_remapped_ids_mapping",
                                            "_managed_collision_modules.t1._mch_counts"}));
}

TEST(ManagedCollisionCollection, RejectsAModuleWhoseOutputSizeIsNotTheTables) {
  EXPECT_THAT(error_of([] {
                make_mcc(4, {{"t1", 5, {"f1"}}});
              }),
              HasSubstr("table 't1' has output size 4, expected the table's num_embeddings 5"));
}

TEST(ManagedCollisionCollection, RejectsATableWithoutModule) {
  EXPECT_THAT(error_of([] {
                make_mcc(4, {{"t1", 4, {"f1"}}, {"t2", 4, {"f2"}}});
              }),
              HasSubstr("table 't2' is not present in managed_collision_modules [t1]"));
}

TEST(ManagedCollisionCollection, RejectsInputMissingAManagedFeature) {
  auto mcc = make_mcc(4, {{"t1", 4, {"f1"}}});
  auto kjt = KeyedJaggedTensor::from_lengths({"f2"}, longs({1}), longs({1}));
  EXPECT_THAT(error_of([&] { mcc->forward(kjt); }),
              HasSubstr("feature 'f1' of its tables is missing from the input [f2]"));
}

TEST(ManagedCollisionCollection, BuiltFromTorchRecsEmbeddingConfigs) {
  // An EmbeddingBagConfig without feature names reads the feature of its name.
  ManagedCollisionCollection from_bags(ManagedCollisionModules{{"t1", lfu_module(4)}},
                                       std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 8, "t1")});
  ASSERT_EQ(from_bags->embedding_configs().size(), 1u);
  EXPECT_EQ(from_bags->embedding_configs()[0].feature_names, (std::vector<std::string>{"t1"}));
  ManagedCollisionCollection from_seq(ManagedCollisionModules{{"t1", lfu_module(4)}},
                                      std::vector<EmbeddingConfig>{EmbeddingConfig(4, 8, "t1", {"a", "b"})});
  EXPECT_EQ(from_seq->table_to_features()[0].second, (std::vector<std::string>{"a", "b"}));
  EXPECT_THAT(error_of([] {
                ManagedCollisionCollection(ManagedCollisionModules{{"t1", lfu_module(4)}},
                                           std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(5, 8, "t1")});
              }),
              HasSubstr("expected the table's num_embeddings 5"));
}

TEST(ManagedCollisionCollection, ApplyMcMethodToJtDictCallsTheNamedMethod) {
  auto module = lfu_module(4);
  module->train();
  const JtDict features = {{"f", JaggedTensor::from_lengths(longs({7, 7, 9}), longs({3}))}};
  // remap before any profile: every id goes to the overflow slot (the last).
  const JtDict remapped = apply_mc_method_to_jt_dict(*module, "remap", features);
  ASSERT_EQ(remapped.size(), 1u);
  EXPECT_EQ(remapped[0].first, "f");
  EXPECT_TRUE(torch::equal(remapped[0].second.values(), longs({3, 3, 3})));
  // profile, then remap: 7 (twice) and 9 now own slots.
  apply_mc_method_to_jt_dict(*module, "profile", features);
  const JtDict after = apply_mc_method_to_jt_dict(*module, "remap", features);
  EXPECT_NE(after[0].second.values()[0].item<int64_t>(), 3);
  EXPECT_THAT(error_of([&] { apply_mc_method_to_jt_dict(*module, "evict", features); }),
              HasSubstr("unknown method 'evict'; expected one of [preprocess, profile, remap, forward]"));
}

TEST(EvictionPolicies, AdditionalIdsCountAsSeenNow) {
  // History: ids 5 (iter 2) and 6 (iter 3); additional id 5 at current_iter 9.
  // torch::unique(cat(history, additional)) = [5, 6], inverse [0, 1, 0].
  const MetadataDict history = {{"last_access_iter", longs({2, 3})}};
  const torch::Tensor counts = longs({2, 1});
  const torch::Tensor inverse = longs({0, 1, 0});
  for (const std::shared_ptr<MCHEvictionPolicy>& policy :
       {std::shared_ptr<MCHEvictionPolicy>(std::make_shared<LRU_EvictionPolicy>(1.0)),
        std::shared_ptr<MCHEvictionPolicy>(std::make_shared<DistanceLFU_EvictionPolicy>(1.0))}) {
    const MetadataDict with = policy->coalesce_history_metadata(9, history, counts, inverse, longs({5}), std::nullopt);
    EXPECT_TRUE(torch::equal(with.at("last_access_iter"), longs({9, 3}))) << policy->name();
    const MetadataDict without =
        policy->coalesce_history_metadata(9, history, counts, longs({0, 1}), std::nullopt, std::nullopt);
    EXPECT_TRUE(torch::equal(without.at("last_access_iter"), longs({2, 3}))) << policy->name();
    EXPECT_THAT(error_of([&] { policy->coalesce_history_metadata(9, history, counts, longs({0, 1}), longs({5}), std::nullopt); }),
                HasSubstr("unique_inverse_mapping has 2 entries for 3 history entries"));
  }
}

}  // namespace mc_collection_test
}  // namespace recmod
