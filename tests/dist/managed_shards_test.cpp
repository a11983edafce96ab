// ManagedCollisionShards::slice: a rank's part of an unsharded
// managed-collision state. Table t (16 slots over ids [0, 12)) row_wise on 2
// ranks: rank 0 holds slots [0, 8) for ids [0, 6), rank 1 slots [8, 16) for
// ids [6, 12). A state written with that layout is taken as it is; one
// written otherwise (one process placed ids anywhere) is re-placed: the
// block's ids first, in raw-id order, with their metadata, and the rows they
// come from; a block with more ids than its slots less one is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/dist/planner.h"
#include "recmod/mc/eviction_policies.h"

namespace recmod::dist {
namespace managed_shards_test {

using ::testing::HasSubstr;

constexpr int64_t kE = std::numeric_limits<int64_t>::max();  // an empty entry's raw id
const std::string kPrefix = "_managed_collision_modules.t.";

/// The unsharded collection of table t (`rows` slots, LFU, ids [0, 12)).
ManagedCollisionCollection collection(int64_t rows) {
  auto mch = std::make_shared<MCHManagedCollisionModuleImpl>(
      MCHManagedCollisionModuleOptions(rows, std::make_shared<LFU_EvictionPolicy>(), 1).input_hash_size(12));
  return ManagedCollisionCollection(ManagedCollisionModules{{"t", mch}},
                                    std::vector<ManagedTableConfig>{ManagedTableConfig{"t", rows, {"f"}}});
}

ShardingPlan row_wise_plan(int64_t rows) {
  ShardingPlan plan;
  plan.world_size = 2;
  plan.tables = {TablePlan{"mc", "t", ShardingType::row_wise, row_wise_shards(rows, 4, 2)}};
  return plan;
}

/// The unsharded state of `full` with its slot buffers and LFU counts replaced.
StateDict state_of(ManagedCollisionCollection& full, const std::vector<int64_t>& ids, const std::vector<int64_t>& slots,
                   const std::vector<int64_t>& counts) {
  StateDict out = state_dict(*full);
  for (auto& [key, value] : out) {
    if (key == kPrefix + "_mch_sorted_raw_ids") value = torch::tensor(ids, torch::kLong);
    if (key == kPrefix + "_mch_remapped_ids_mapping") value = torch::tensor(slots, torch::kLong);
    if (key == kPrefix + "_mch_counts") value = torch::tensor(counts, torch::kLong);
  }
  return out;
}

std::vector<int64_t> values(const StateDict& state, const std::string& buffer) {
  const torch::Tensor* t = find_tensor(state, kPrefix + buffer);
  if (t == nullptr) throw std::runtime_error("no " + buffer);
  return std::vector<int64_t>(t->data_ptr<int64_t>(), t->data_ptr<int64_t>() + t->numel());
}

TEST(ManagedCollisionShards, AStateWrittenWithThisLayoutIsTakenAsItIs) {
  auto full = collection(16);
  // ids 1, 3 in rank 0's slots 0, 1; ids 7, 9, 10 in rank 1's slots 8, 9, 10
  const StateDict state = state_of(full, {1, 3, 7, 9, 10, kE, kE, kE, kE, kE, kE, kE, kE, kE, kE, kE},
                                   {0, 1, 8, 9, 10, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15},
                                   {10, 20, 30, 40, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  std::map<std::string, torch::Tensor> moved;
  const StateDict rank1 =
      ManagedCollisionShards(*full, {"t"}, "mc", row_wise_plan(16), 2, 1).slice(state, "ckpt", &moved);
  EXPECT_EQ(values(rank1, "_mch_sorted_raw_ids"), (std::vector<int64_t>{7, 9, 10, kE, kE, kE, kE, kE}));
  EXPECT_EQ(values(rank1, "_mch_remapped_ids_mapping"), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(values(rank1, "_mch_counts"), (std::vector<int64_t>{30, 40, 50, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(moved.empty());  // no row moves
}

TEST(ManagedCollisionShards, AStateOfAnotherLayoutIsReplacedIdsFirstWithTheirRows) {
  auto full = collection(16);
  // one process placed ids 1, 3, 7, 9, 10 in slots 8, 2, 0, 5, 15
  const StateDict state = state_of(full, {1, 3, 7, 9, 10, kE, kE, kE, kE, kE, kE, kE, kE, kE, kE, kE},
                                   {8, 2, 0, 5, 15, 1, 3, 4, 6, 7, 9, 10, 11, 12, 13, 14},
                                   {10, 20, 30, 40, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  const std::vector<std::vector<int64_t>> want_ids = {{1, 3, kE, kE, kE, kE, kE, kE}, {7, 9, 10, kE, kE, kE, kE, kE}};
  const std::vector<std::vector<int64_t>> want_counts = {{10, 20, 0, 0, 0, 0, 0, 0}, {30, 40, 50, 0, 0, 0, 0, 0}};
  // local row j <- the j-th id's global row; an empty slot keeps its own
  const std::vector<std::vector<int64_t>> want_sources = {{8, 2, 2, 3, 4, 5, 6, 7}, {0, 5, 15, 11, 12, 13, 14, 15}};
  for (int64_t rank : {0, 1}) {
    std::map<std::string, torch::Tensor> moved;
    const StateDict mine =
        ManagedCollisionShards(*full, {"t"}, "mc", row_wise_plan(16), 2, rank).slice(state, "ckpt", &moved);
    const auto r = static_cast<size_t>(rank);
    EXPECT_EQ(values(mine, "_mch_sorted_raw_ids"), want_ids[r]) << "rank " << rank;
    EXPECT_EQ(values(mine, "_mch_remapped_ids_mapping"), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(values(mine, "_mch_counts"), want_counts[r]) << "rank " << rank;
    ASSERT_EQ(moved.count("t"), 1u);
    const torch::Tensor& sources = moved.at("t");
    EXPECT_EQ(std::vector<int64_t>(sources.data_ptr<int64_t>(), sources.data_ptr<int64_t>() + sources.numel()),
              want_sources[r])
        << "rank " << rank;
    // the rows (and any per-row state) follow
    const StateDict table = {{"embedding_bags.t.weight", torch::arange(64, torch::kFloat).view({16, 4})}};
    StateDict pieces = {{"embedding_bags.t.weight", table[0].second.narrow(0, 8 * rank, 8)}};
    move_table_rows(pieces, table, moved, "embedding_bags.");
    EXPECT_TRUE(torch::equal(pieces[0].second, table[0].second.index_select(0, sources)));
  }
}

TEST(ManagedCollisionShards, ABlockWithMoreIdsThanItsSlotsLessOneIsRefused) {
  auto full = collection(8);  // 4 slots a rank: 3 ids at most
  // ids 0, 1, 2, 4 of rank 0's block [0, 6), placed by one process
  const StateDict state =
      state_of(full, {0, 1, 2, 4, kE, kE, kE, kE}, {4, 5, 6, 7, 0, 1, 2, 3}, {1, 1, 1, 1, 0, 0, 0, 0});
  try {
    ManagedCollisionShards(*full, {"t"}, "mc", row_wise_plan(8), 2, 0).slice(state, "ckpt");
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("ckpt: managed-collision table 't' has 4 ids placed in the id block [0, 6) of rank 0"));
    EXPECT_THAT(e.what(), HasSubstr("3 ids at most"));
  }
  // rank 1's block is empty there: it loads
  const StateDict rank1 = ManagedCollisionShards(*full, {"t"}, "mc", row_wise_plan(8), 2, 1).slice(state, "ckpt");
  EXPECT_EQ(values(rank1, "_mch_sorted_raw_ids"), (std::vector<int64_t>{kE, kE, kE, kE}));
}

TEST(ManagedCollisionShards, AMappingOutsideTheTableIsACheckpointError) {
  auto full = collection(8);
  const StateDict state =
      state_of(full, {0, kE, kE, kE, kE, kE, kE, kE}, {9, 1, 2, 3, 4, 5, 6, 7}, {1, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_THROW(ManagedCollisionShards(*full, {"t"}, "mc", row_wise_plan(8), 2, 0).slice(state, "ckpt"),
               CheckpointError);
}

}  // namespace managed_shards_test
}  // namespace recmod::dist
