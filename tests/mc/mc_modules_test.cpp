#include "recmod/mc/mc_modules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "support/test_util.h"

namespace recmod {
namespace mc_modules_test {

using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

/// One feature "f", all ids in one row.
JtDict batch(std::vector<int64_t> ids) {
  const auto n = static_cast<int64_t>(ids.size());
  return {{"f", JaggedTensor::from_lengths(longs(std::move(ids)), longs({n}))}};
}

torch::Tensor ids_of(const JtDict& d) {
  return d.front().second.values();
}

MCHManagedCollisionModule lfu(int64_t zch_size, int64_t interval) {
  return MCHManagedCollisionModule(
      MCHManagedCollisionModuleOptions(zch_size, std::make_shared<LFU_EvictionPolicy>(), interval));
}

MCHManagedCollisionModule lru(int64_t zch_size, int64_t interval) {
  return MCHManagedCollisionModule(
      MCHManagedCollisionModuleOptions(zch_size, std::make_shared<LRU_EvictionPolicy>(), interval));
}

/// Remap without profiling (eval mode), restoring training mode.
torch::Tensor lookup(MCHManagedCollisionModule& m, std::vector<int64_t> ids) {
  const bool was_training = m->is_training();
  m->eval();
  torch::Tensor out = ids_of(m->forward(batch(std::move(ids))));
  m->train(was_training);
  return out;
}

TEST(MCHManagedCollisionModule, StateDictHasTorchRecNamesAndInitialValues) {
  auto m =
      MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(4, std::make_shared<DistanceLFU_EvictionPolicy>(), 2));
  const StateDict sd = state_dict(*m);
  std::vector<std::string> keys;
  for (const auto& kv : sd) keys.push_back(kv.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"_current_iter_tensor", "_mch_sorted_raw_ids", "_mch_remapped_ids_mapping",
                                            "_mch_counts", "_mch_last_access_iter"}));
  EXPECT_EQ(sd[0].second.scalar_type(), torch::kInt);
  EXPECT_FALSE(sd[0].second.requires_grad());
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_TRUE(torch::equal(sd[1].second, longs({max, max, max, max})));
  EXPECT_TRUE(torch::equal(sd[2].second, longs({0, 1, 2, 3})));
  // LFU keeps counts only; LRU last access only.
  EXPECT_EQ(state_dict(*lfu(4, 1)).back().first, "_mch_counts");
  EXPECT_EQ(state_dict(*lru(4, 1)).back().first, "_mch_last_access_iter");
}

TEST(MCHManagedCollisionModule, EvictionsHappenExactlyAtTheInterval) {
  auto m = lfu(4, 3);
  m->train();
  // Before the first eviction every id goes to the overflow slot zch_size - 1.
  EXPECT_TRUE(torch::equal(ids_of(m->forward(batch({10, 10, 20}))), longs({3, 3, 3})));
  EXPECT_FALSE(m->evict().has_value());
  EXPECT_TRUE(torch::equal(ids_of(m->forward(batch({10, 30}))), longs({3, 3})));
  EXPECT_FALSE(m->evict().has_value());
  // Third forward: counts 10:3 20:2 30:1 40:1; three free slots take 10, 20,
  // 30 (ties by id) before this batch is remapped.
  EXPECT_TRUE(torch::equal(ids_of(m->forward(batch({20, 40}))), longs({1, 3})));
  auto evicted = m->evict();
  ASSERT_TRUE(evicted.has_value());
  EXPECT_TRUE(torch::equal(*evicted, longs({0, 1, 2})));
  EXPECT_FALSE(m->evict().has_value());  // reported once
  EXPECT_TRUE(torch::equal(lookup(m, {10, 20, 30, 40}), longs({0, 1, 2, 3})));
  m->forward(batch({50}));
  m->forward(batch({50}));
  EXPECT_FALSE(m->evict().has_value());
  m->forward(batch({50}));
  EXPECT_TRUE(m->evict().has_value());  // sixth forward: the next round
}

TEST(MCHManagedCollisionModule, IdSeenOnceGetsAFreeSlotAtTheNextEviction) {
  auto m = lfu(4, 1);
  m->train();
  // The free slot taken is the last one in stable score order (slot 2).
  EXPECT_TRUE(torch::equal(ids_of(m->forward(batch({77}))), longs({2})));
  EXPECT_TRUE(torch::equal(lookup(m, {77, 78}), longs({2, 3})));
}

TEST(MCHManagedCollisionModule, IdSeenOnceIsFilteredByTheAverageThreshold) {
  auto m = MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(
      4, std::make_shared<LFU_EvictionPolicy>(ThresholdFilter(average_threshold_filter)), 1));
  m->train();
  // counts 5:3, 6:1 -> mean 2: only 5 enters, 6 stays in the overflow slot.
  EXPECT_TRUE(torch::equal(ids_of(m->forward(batch({5, 5, 5, 6}))), longs({2, 2, 2, 3})));
}

TEST(MCHManagedCollisionModule, HistoryCapacityDropsIdsBeyondIt) {
  auto m = lfu(32, 2);
  m->train();
  m->forward(batch({1, 2, 3, 4}));  // capacity int(4 * 2 * 1.25) = 10
  EXPECT_EQ(m->history_capacity(), 10);
  EXPECT_EQ(m->history_size(), 4);
  m->forward(batch({5, 6, 7, 8, 9, 10, 11, 12}));  // only 5..10 fit
  EXPECT_EQ(m->history_size(), 0);                 // coalesced
  const torch::Tensor slots = lookup(m, {5, 10, 11, 12});
  EXPECT_LT(slots[1].item<int64_t>(), 31);
  EXPECT_EQ(slots[2].item<int64_t>(), 31);
  EXPECT_EQ(slots[3].item<int64_t>(), 31);
}

TEST(MCHManagedCollisionModule, LfuKeepsTheMostFrequentIds) {
  auto m = lfu(4, 2);
  m->train();
  m->forward(batch({5, 6, 7, 8, 5, 5}));
  m->forward(batch({6, 9, 5, 6, 8}));  // counts 5:4 6:3 8:2 7:1 9:1, three slots
  EXPECT_TRUE(torch::equal(lookup(m, {5, 6, 8, 7, 9}), longs({0, 1, 2, 3, 3})));
}

TEST(MCHManagedCollisionModule, LruKeepsTheMostRecentIds) {
  auto m = lru(3, 3);
  m->train();
  m->forward(batch({1, 1, 1}));
  m->forward(batch({2, 2}));
  m->forward(batch({3, 4}));  // two slots: the ids of iteration 3
  const torch::Tensor slots = lookup(m, {3, 4, 1, 2});
  EXPECT_TRUE(torch::equal(slots, longs({0, 1, 2, 2})));
}

TEST(MCHManagedCollisionModule, LfuAndLruDisagreeOnAFrequentButOldId) {
  auto by_lfu = lfu(3, 1);
  auto by_lru = lru(3, 1);
  for (auto* m : {&by_lfu, &by_lru}) {
    (*m)->train();
    (*m)->forward(batch({1, 1, 1, 1, 2}));
    (*m)->forward(batch({2}));
    (*m)->forward(batch({3}));
  }
  EXPECT_TRUE(torch::equal(lookup(by_lfu, {1, 2, 3}), longs({0, 1, 2})));  // 3 never gets in
  EXPECT_TRUE(torch::equal(lookup(by_lru, {1, 2, 3}), longs({2, 1, 0})));  // 1 is evicted, 3 takes slot 0
}

TEST(MCHManagedCollisionModule, EvictAccumulatesRoundsAsSortedUnique) {
  auto m = lfu(3, 1);
  m->train();
  m->forward(batch({1, 1, 1, 2, 2}));  // 1 -> slot 0, 2 -> slot 1
  m->forward(batch({3, 3, 3}));        // 3 (3) beats 2 (2): slot 1 taken over
  auto evicted = m->evict();
  ASSERT_TRUE(evicted.has_value());
  EXPECT_TRUE(torch::equal(*evicted, longs({0, 1})));
  m->forward(batch({1}));  // a round that changes nothing
  evicted = m->evict();
  ASSERT_TRUE(evicted.has_value());
  EXPECT_EQ(evicted->numel(), 0);
}

TEST(MCHManagedCollisionModule, EvalModeRemapsWithoutProfiling) {
  auto m = lfu(4, 1);
  m->eval();
  m->forward(batch({1, 2, 3}));
  EXPECT_EQ(m->history_capacity(), -1);
  EXPECT_EQ(state_dict(*m)[0].second.item<int32_t>(), 0);
  EXPECT_FALSE(m->evict().has_value());
}

TEST(MCHManagedCollisionModule, ResidualHashAndPreprocess) {
  auto m = MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(4, std::make_shared<LFU_EvictionPolicy>(), 1)
                                         .input_hash_size(100)
                                         .input_hash_func(mod_hash)
                                         .mch_size(5)
                                         .mch_hash_func(mod_hash));
  EXPECT_EQ(m->output_size(), 9);
  EXPECT_EQ(m->input_size(), 100u);
  // preprocess hashes the ids but keeps lengths; forward does not hash.
  const JtDict pre = m->preprocess(batch({123, -1, 7}));
  EXPECT_TRUE(torch::equal(ids_of(pre), longs({23, 99, 7})));
  m->eval();
  // Unmatched ids go to zch_size + id % mch_size.
  EXPECT_TRUE(torch::equal(ids_of(m->forward(pre)), longs({4 + 3, 4 + 4, 4 + 2})));
}

TEST(MCHManagedCollisionModule, StateLoadedMidStreamContinuesFromTheSavedIteration) {
  auto a = lfu(5, 2);
  a->train();
  a->forward(batch({1, 1, 2}));
  a->forward(batch({3, 1}));  // eviction at iteration 2
  a->evict();
  a->forward(batch({4, 4, 9}));  // iteration 3, in a's history only
  const StateDict saved = state_dict(*a);

  auto b = lfu(5, 2);
  load_state_dict(*b, saved, "test");
  b->train();
  // a evicts at iteration 4; b counts from the loaded iteration 3 with an
  // empty history, so its next round is at iteration 5.
  a->forward(batch({5, 5}));
  EXPECT_TRUE(a->evict().has_value());
  EXPECT_TRUE(torch::equal(lookup(a, {4, 9}), longs({3, 4})));
  b->forward(batch({5, 5}));
  EXPECT_FALSE(b->evict().has_value());
  b->forward(batch({6}));
  auto evicted = b->evict();
  ASSERT_TRUE(evicted.has_value());
  EXPECT_TRUE(torch::equal(*evicted, longs({0})));
  EXPECT_EQ(state_dict(*b)[0].second.item<int32_t>(), 5);
  // b's round saw 5 (twice) and 6 only; 4 and 9 were in a's unsaved
  // history. 5 takes the empty slot 0; 6 (count 1) loses the tie to 2 and 3.
  EXPECT_TRUE(torch::equal(lookup(b, {1, 2, 3, 4, 9, 5, 6}), longs({1, 2, 3, 4, 4, 0, 4})));
}

TEST(MCHManagedCollisionModule, SavingDoesNotDisturbAModuleThatIsNotReloaded) {
  auto saved = lfu(4, 2);
  auto twin = lfu(4, 2);
  const std::vector<std::vector<int64_t>> stream = {{1, 2, 2}, {3, 3, 3}, {4, 1}, {2, 5}, {5, 5, 6}};
  for (size_t i = 0; i < stream.size(); ++i) {
    for (auto* m : {&saved, &twin}) (*m)->train();
    if (i == 2) {
      std::ostringstream out;
      std::vector<torch::Tensor> tensors;
      for (const auto& kv : state_dict(*saved)) tensors.push_back(kv.second);
      torch::save(tensors, out);
      EXPECT_FALSE(out.str().empty());
    }
    const torch::Tensor a = ids_of(saved->forward(batch(stream[i])));
    const torch::Tensor b = ids_of(twin->forward(batch(stream[i])));
    EXPECT_TRUE(torch::equal(a, b)) << "batch " << i;
    const auto ea = saved->evict(), eb = twin->evict();
    ASSERT_EQ(ea.has_value(), eb.has_value()) << "batch " << i;
    if (ea) {
      EXPECT_TRUE(torch::equal(*ea, *eb)) << "batch " << i;
    }
  }
}

TEST(MCHManagedCollisionModule, RebuildWithOutputIdRangeScalesTheSizes) {
  auto m = MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(8, std::make_shared<LFU_EvictionPolicy>(), 1)
                                         .mch_size(2)
                                         .mch_hash_func(mod_hash));
  auto part = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(m->rebuild_with_output_id_range({5, 10}));
  ASSERT_TRUE(part);
  EXPECT_EQ(part->options.zch_size(), 4);  // int(8 * 5 / 10)
  EXPECT_EQ(part->options.mch_size().value_or(-1), 1);
  EXPECT_EQ(part->options.output_global_offset(), 5);
  EXPECT_EQ(part->output_size(), 5);
}

TEST(MCHManagedCollisionModule, RejectsBadOptions) {
  // Bad options are a caller's mistake: InputError (docs/architecture.md, "Errors").
  EXPECT_THAT(test::error_of<InputError>([] { lfu(0, 1); }), HasSubstr("zch_size must be > 0, got 0"));
  EXPECT_THAT(test::error_of<InputError>([] {
                MCHManagedCollisionModule(
                    MCHManagedCollisionModuleOptions(4, std::make_shared<LFU_EvictionPolicy>(), 1).mch_size(3));
              }),
              HasSubstr("mch_hash_func must be provided if mch_size is provided"));
}

TEST(MCHManagedCollisionModule, EmptyBatchesGiveAnEmptyRoundEvenWithAFilter) {
  auto m = MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(
      4, make_eviction_policy("DistanceLFU_EvictionPolicy", 1.0, threshold_filter_by_name("dynamic_threshold_filter")),
      1));
  m->train();
  auto out = m->forward(batch({}));
  EXPECT_EQ(ids_of(out).numel(), 0);
  auto evicted = m->evict();
  ASSERT_TRUE(evicted.has_value());
  EXPECT_EQ(evicted->numel(), 0);
}

TEST(EvictionPolicies, ByNameWithTheirMetadata) {
  auto lfu_policy = make_eviction_policy("LFU_EvictionPolicy");
  ASSERT_EQ(lfu_policy->metadata_info().size(), 1u);
  EXPECT_EQ(lfu_policy->metadata_info()[0].metadata_name, "counts");
  EXPECT_FALSE(lfu_policy->metadata_info()[0].is_history_metadata);
  auto lru_policy = std::dynamic_pointer_cast<LRU_EvictionPolicy>(make_eviction_policy("LRU_EvictionPolicy", 2.0));
  ASSERT_TRUE(lru_policy);
  EXPECT_EQ(lru_policy->decay_exponent(), 2.0);
  EXPECT_TRUE(lru_policy->metadata_info()[0].is_history_metadata);
  EXPECT_EQ(make_eviction_policy("DistanceLFU_EvictionPolicy")->metadata_info().size(), 2u);
  try {
    make_eviction_policy("FIFO");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown eviction policy 'FIFO'; expected one of [LFU_EvictionPolicy, "
                                    "LRU_EvictionPolicy, DistanceLFU_EvictionPolicy]"));
  }
}

TEST(HashFuncs, ModMatchesTorchRemainderAndHandlesTwoToThe63) {
  EXPECT_TRUE(torch::equal(mod_hash(longs({-7, 7, 100}), 10), longs({3, 7, 0})));
  const int64_t min = std::numeric_limits<int64_t>::min();
  // remainder by 2**63: negatives move up by 2**63.
  EXPECT_TRUE(torch::equal(mod_hash(longs({-1, min, 5}), kDefaultInputHashSize),
                           longs({std::numeric_limits<int64_t>::max(), 0, 5})));
}

TEST(HashFuncs, Murmur3IsFmix64ThenMod) {
  // fmix64(1) = 0xb456bcfc34c2cb2c, fmix64(42) = 0x810879608e4259cc,
  // fmix64(-5) = 0x4b62179e0b339f97 (reference values from an independent
  // big-integer implementation); sign bit cleared, then % 1000.
  EXPECT_TRUE(torch::equal(murmur3_hash(longs({1, 42, -5}), 1000), longs({796, 532, 671})));
  EXPECT_TRUE(torch::equal(hash_func_by_name("murmur3")(longs({1}), 1000), longs({796})));
}

TEST(HashFuncs, UnknownNameListsTheValidOnes) {
  try {
    hash_func_by_name("md5");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown hash function 'md5'; expected one of [mod, murmur3]"));
  }
}

}  // namespace mc_modules_test
}  // namespace recmod
