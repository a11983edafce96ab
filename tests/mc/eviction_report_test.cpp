#include "recmod/mc/eviction_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace eviction_report_test {

using ::testing::HasSubstr;

KeyedJaggedTensor one_sample(std::vector<int64_t> ids) {
  const auto n = static_cast<int64_t>(ids.size());
  return KeyedJaggedTensor::from_lengths({"f1"}, torch::tensor(ids, torch::kLong), torch::tensor({n}, torch::kLong));
}

/// A model with one MC-EBC child "mc": table t1 of 4 slots (feature f1),
/// LFU eviction every batch, remapped features returned (as config nodes do).
struct McModel : torch::nn::Module {
  McModel() {
    EmbeddingBagCollection ebc(std::vector<EmbeddingBagConfig>{EmbeddingBagConfig(4, 2, "t1", {"f1"})}, false);
    ManagedCollisionModules modules;
    modules.emplace_back("t1", std::make_shared<MCHManagedCollisionModuleImpl>(MCHManagedCollisionModuleOptions(
                                   4, std::make_shared<LFU_EvictionPolicy>(), 1)));
    ManagedCollisionCollection mcc(modules, managed_table_configs(ebc->embedding_bag_configs()));
    mc = register_module("mc", ManagedCollisionEmbeddingBagCollection(ebc, mcc, /*return_remapped=*/true));
  }
  ManagedCollisionEmbeddingBagCollection mc{nullptr};
};

TEST(EvictionTracker, CountsIdsSlotsAndEvictionsPerTable) {
  McModel model;
  EvictionTracker tracker(model);
  ASSERT_EQ(tracker.tables().size(), 1u);
  EXPECT_EQ(tracker.tables()[0].node, "mc");
  EXPECT_EQ(tracker.tables()[0].slots, 4);

  tracker.observe(one_sample({7, 7, 8}));
  const auto& t = tracker.tables()[0];
  EXPECT_EQ(t.ids_seen, 3);
  EXPECT_EQ(t.distinct.size(), 2u);
  EXPECT_EQ(t.hits, 3);  // both ids got a slot of their own
  EXPECT_EQ(t.slots_used, 2);
  EXPECT_EQ(t.evicted, 0);

  // Nine more distinct ids stream through 4 slots: ids must lose their slots.
  tracker.observe(one_sample({1, 1, 1, 2, 2, 3, 3}));
  tracker.observe(one_sample({4, 4, 5, 5, 6, 6}));
  tracker.observe(one_sample({9, 9, 10, 10, 11, 11}));
  EXPECT_EQ(t.ids_seen, 22);
  EXPECT_EQ(t.distinct.size(), 11u);
  EXPECT_GT(t.evicted, 0);
  EXPECT_LE(t.slots_used, 4);
  EXPECT_LE(t.hits, t.ids_seen);

  const nlohmann::json report = tracker.to_json();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0]["table"], "t1");
  EXPECT_EQ(report[0]["ids_seen"], 22);
  EXPECT_EQ(report[0]["distinct_ids"], 11);
  EXPECT_EQ(report[0]["evicted"], t.evicted);
  EXPECT_DOUBLE_EQ(report[0]["hit_rate"].get<double>(), t.hit_rate());
}

TEST(EvictionTracker, AModelWithoutManagedCollisionsIsAnError) {
  torch::nn::Module plain;
  plain.register_module("linear", torch::nn::Linear(2, 1));
  try {
    EvictionTracker tracker(plain);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no ManagedCollisionEmbeddingBagCollection node"));
  }
}

}  // namespace eviction_report_test
}  // namespace recmod
