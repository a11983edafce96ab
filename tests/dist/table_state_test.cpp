// Sharded table state gathered one tensor at a time (what a distributed
// checkpoint writes): two ranks (threads of this process, each with its own
// Gloo group on 127.0.0.1) hold their slices of known full tensors; every
// rank gets the same entries (keys, shapes, dtypes, order), and rank 0's
// makes return the full tensors, for every sharding type, also when rank 0
// assembles them in file-backed tensors (a table larger than its memory).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <future>
#include <string>
#include <vector>

#include "recmod/dist/local_launcher.h"
#include "recmod/dist/planner.h"
#include "recmod/dist/table_state.h"
#include "recmod/io/file_backed_tensor.h"
#include "support/local_ranks.h"

namespace recmod::dist {
namespace table_state_test {

constexpr int64_t kWorld = 2, kRows = 7, kDim = 5;

std::vector<ShardedTableState> tables() {
  auto table = [](const std::string& name, ShardingType type, std::vector<Shard> shards, torch::Dtype dtype) {
    return ShardedTableState{name, kRows, kDim, dtype, TablePlan{"sparse", name, type, std::move(shards)}};
  };
  return {table("rows", ShardingType::row_wise, row_wise_shards(kRows, kDim, kWorld), torch::kFloat),
          table("columns", ShardingType::column_wise, column_wise_shards(kRows, kDim, {1, 0}), torch::kFloat),
          table("owned", ShardingType::table_wise, {Shard{1, 0, kRows, 0, kDim}}, torch::kHalf),
          table("kept", ShardingType::table_wise, {Shard{0, 0, kRows, 0, kDim}}, torch::kFloat),
          table("replicated", ShardingType::data_parallel,
                {Shard{0, 0, kRows, 0, kDim}, Shard{1, 0, kRows, 0, kDim}}, torch::kFloat)};
}

// The weight and a per-row state (rowwise Adagrad's momentum).
const std::vector<TableTensorKind> kKinds = {TableTensorKind{"", false, true},
                                             TableTensorKind{".momentum1", true, false}};

StateDict full_state() {
  StateDict full;
  for (const auto& t : tables()) {
    full.emplace_back("embedding_bags." + t.name + ".weight", torch::randn({kRows, kDim}).to(t.weight_dtype));
    full.emplace_back("embedding_bags." + t.name + ".weight.momentum1", torch::rand({kRows}));
  }
  return full;
}

/// Two ranks gather `full` from their slices; rank 0 assembles in what
/// `allocate` returns. Returns how many tensors rank 0 received a shard into.
int expect_deferred_gather_is_full(const FullTensorAllocator& allocate) {
  torch::manual_seed(5);
  const StateDict full = full_state();
  int file_backed = 0;
  const int port = free_local_port();
  auto run_rank = [&](int64_t rank) {
    auto comm = test::connect_local_rank(rank, kWorld, port);
    StateDict local;  // this rank's pieces, as its own tensors
    for (const auto& [key, piece] : slice_table_state(rank, "embedding_bags", tables(), full, kKinds, "full"))
      local.emplace_back(key, piece.contiguous().clone());
    const DeferredStateDict entries = deferred_table_state(*comm, "embedding_bags", tables(), local, kKinds, allocate);
    local.clear();  // the entries keep what they need
    ASSERT_EQ(entries.size(), full.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& [key, want] = full[i];
      EXPECT_EQ(entries[i].key, key);
      EXPECT_EQ(c10::IntArrayRef(entries[i].sizes), want.sizes()) << key;
      EXPECT_EQ(entries[i].dtype, want.scalar_type()) << key;
      const torch::Tensor got = entries[i].make();
      if (rank != 0) {
        EXPECT_FALSE(got.defined()) << key;
        continue;
      }
      ASSERT_TRUE(got.defined()) << key;
      // column_wise per-row state: one copy per column block, averaged
      EXPECT_TRUE(torch::allclose(got.to(torch::kFloat), want.to(torch::kFloat), 0, 1e-6)) << key;
      if (io::is_file_backed(got)) ++file_backed;
    }
  };
  auto other = std::async(std::launch::async, run_rank, 1);
  run_rank(0);
  other.get();
  return file_backed;
}

TEST(TableState, DeferredGatherMakesEachFullTensorOnRankZeroInTheAnnouncedOrder) {
  EXPECT_EQ(expect_deferred_gather_is_full({}), 0);
}

TEST(TableState, RankZeroAssemblesInWhatTheAllocatorGives) {
  // Every gathered tensor in a file (what a table larger than the memory
  // gets): the same tensors. The tables rank 0 holds whole ("kept",
  // "replicated": 4 tensors) are its own, not assembled.
  const std::string dir = ::testing::TempDir();
  const int file_backed = expect_deferred_gather_is_full(
      [&](torch::IntArrayRef sizes, torch::Dtype dtype) { return io::file_backed_zeros(sizes, dtype, dir); });
  EXPECT_EQ(file_backed, 6);
}

}  // namespace table_state_test
}  // namespace recmod::dist
