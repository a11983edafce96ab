#include "recmod/mc/mc_collection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace {

using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

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
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "_managed_collision_modules.t1._current_iter_tensor",
                      "_managed_collision_modules.t1._mch_sorted_raw_ids",
                      "_managed_collision_modules.t1._mch_remapped_ids_mapping",
                      "_managed_collision_modules.t1._mch_counts"}));
}

TEST(ManagedCollisionCollection, RejectsAModuleWhoseOutputSizeIsNotTheTables) {
  EXPECT_THAT(error_of([] { make_mcc(4, {{"t1", 5, {"f1"}}}); }),
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
  EXPECT_THAT(error_of([&] { mcc->forward(kjt); }), HasSubstr("feature 'f1' of its tables is missing from the input [f2]"));
}

}  // namespace
}  // namespace recmod
