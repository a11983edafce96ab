// The sharded ManagedCollisionEmbeddingCollection in isolation: two ranks
// (threads of this process, each with its own Gloo group on 127.0.0.1) run
// a training forward on their halves of a batch. A row_wise managed table:
// every id must reach the shard owning its input block, be remapped there by
// a module rebuilt with rebuild_with_output_id_range for the shard's rows,
// and come back as the unsharded table's row of that global slot; a
// table_wise one is the unsharded module on its rank. Rank 0's gathered
// state has the unsharded module's keys and shapes, slots in each id's block;
// gathered one tensor at a time (a checkpoint's way), the same tensors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/launch_env.h"
#include "recmod/dist/local_launcher.h"
#include "recmod/dist/planner.h"
#include "recmod/dist/sharded_mc_embedding.h"
#include "recmod/mc/eviction_policies.h"
#include "support/local_ranks.h"

namespace recmod::dist {
namespace sharded_mc_embedding_test {

const std::vector<std::string> kKeys = {"C1", "C2", "C3"};
constexpr int64_t kWorld = 2, kBatch = 5, kRows = 16, kDim = 3, kInput = 12;
constexpr int64_t kEmpty = std::numeric_limits<int64_t>::max();

KeyedJaggedTensor rows_of(const std::vector<std::vector<std::vector<int64_t>>>& bags, int64_t start, int64_t n) {
  std::vector<int64_t> values, lengths;
  for (const auto& key : bags)
    for (int64_t i = start; i < start + n; ++i) {
      lengths.push_back(static_cast<int64_t>(key[static_cast<size_t>(i)].size()));
      values.insert(values.end(), key[static_cast<size_t>(i)].begin(), key[static_cast<size_t>(i)].end());
    }
  return KeyedJaggedTensor::from_lengths(kKeys, torch::tensor(values, torch::kLong), torch::tensor(lengths, torch::kLong),
                                         std::nullopt, n);
}

std::shared_ptr<MCHManagedCollisionModuleImpl> mch(int64_t rows) {
  return std::make_shared<MCHManagedCollisionModuleImpl>(
      MCHManagedCollisionModuleOptions(rows, std::make_shared<LFU_EvictionPolicy>(), 1).input_hash_size(kInput));
}

/// An MC-EC over t_m (C1, C2) and t_n (C3), 16 rows each, seeded so two
/// calls build the same module.
ManagedCollisionEmbeddingCollection mc_ec(bool need_indices, bool return_remapped) {
  torch::manual_seed(4);
  EmbeddingCollection ec({EmbeddingConfig(kRows, kDim, "t_m", {"C1", "C2"}), EmbeddingConfig(kRows, kDim, "t_n", {"C3"})},
                         need_indices);
  ManagedCollisionModules modules{{"t_m", mch(kRows)}, {"t_n", mch(kRows)}};
  return ManagedCollisionEmbeddingCollection(ec, ManagedCollisionCollection(modules, managed_table_configs(ec->embedding_configs())),
                                             return_remapped, /*reset_evicted_rows=*/true);
}

/// Sequences of 0-2 ids in [0, 12) per key (empty ones included).
std::vector<std::vector<std::vector<int64_t>>> sequences() {
  std::vector<std::vector<std::vector<int64_t>>> bags(kKeys.size());
  for (size_t k = 0; k < kKeys.size(); ++k)
    for (int64_t i = 0; i < kWorld * kBatch; ++i) {
      std::vector<int64_t> bag;
      for (int64_t j = 0; j < (i + static_cast<int64_t>(k)) % 3; ++j) bag.push_back((i * 5 + j * 7 + static_cast<int64_t>(k)) % kInput);
      bags[k].push_back(bag);
    }
  return bags;
}

/// `kjt` with a key "X" of no table appended (ids 100, 101, ... outside
/// every input space): what the MC collection passes through.
KeyedJaggedTensor with_other_key(const KeyedJaggedTensor& kjt) {
  JtDict dict = kjt.to_dict();
  std::vector<int64_t> lengths(static_cast<size_t>(kjt.stride()), 1);
  lengths[0] = 0;
  const auto n = static_cast<int64_t>(kjt.stride()) - 1;
  dict.emplace_back("X", JaggedTensor::from_lengths(torch::arange(100, 100 + n, torch::kLong),
                                                    torch::tensor(lengths, torch::kLong)));
  return KeyedJaggedTensor::from_jt_dict(dict);
}

// The need_indices ids and the returned remapped KJT of the sharded MC-EC:
// what the unsharded module's EmbeddingCollection looks up, the global slot
// of each id (its holder's row plus the shard's row offset).
void expect_remapped(const JaggedTensorDict& got, const std::optional<KeyedJaggedTensor>& remapped,
                     const KeyedJaggedTensor& input, const std::map<std::string, std::vector<int64_t>>& slots,
                     int64_t rank) {
  ASSERT_TRUE(remapped.has_value());
  EXPECT_EQ(remapped->keys(), input.keys());
  EXPECT_TRUE(torch::equal(remapped->lengths(), input.lengths()));
  EXPECT_EQ(remapped->values().scalar_type(), input.values().scalar_type());
  for (const auto& entry : slots) {
    const std::string& feature = entry.first;
    const torch::Tensor w = torch::tensor(entry.second, torch::kLong);
    const auto out = std::find_if(got.begin(), got.end(), [&](const auto& kv) { return kv.first == feature; });
    ASSERT_NE(out, got.end()) << feature;
    ASSERT_TRUE(out->second.has_weights()) << feature;
    EXPECT_TRUE(torch::equal(out->second.weights(), w)) << "rank " << rank << " " << feature << ": "
                                                        << out->second.weights() << " vs " << w;
    const JtDict dict = remapped->to_dict();
    const auto in = std::find_if(dict.begin(), dict.end(), [&](const auto& kv) { return kv.first == feature; });
    EXPECT_TRUE(torch::equal(in->second.values(), w)) << "rank " << rank << " " << feature;
  }
  // the key of no table passes through
  EXPECT_TRUE(torch::equal(remapped->to_dict().back().second.values(), input.to_dict().back().second.values()));
}

// With `indices`, the EC has need_indices and the MC-EC
// return_remapped_features: the same rows, and the global slots as the
// output's ids and in the remapped KJT.
void check_against_rebuilt_modules(bool indices) {
  // t_m (C1, C2) row_wise: rows [0, 8) own ids [0, 6), rows [8, 16) ids [6, 12);
  // t_n (C3) table_wise on rank 1.
  ManagedCollisionEmbeddingCollection full = mc_ec(indices, indices);
  const EmbeddingCollection ec = full->embedding_collection();
  ShardingPlan plan;
  plan.world_size = kWorld;
  plan.tables = {TablePlan{"mc", "t_m", ShardingType::row_wise, row_wise_shards(kRows, kDim, kWorld)},
                 TablePlan{"mc", "t_n", ShardingType::table_wise, {Shard{1, 0, kRows, 0, kDim}}}};

  const auto bags = sequences();

  // Expected: per table and shard, a module rebuilt for the shard's rows
  // remaps the global batch's ids of its block (rank by rank, the table's
  // features in order); an id's row is the full table's row of its slot.
  struct Table { std::string name; std::vector<size_t> keys; std::vector<std::pair<int64_t, int64_t>> shards; };
  const std::vector<Table> tables = {{"t_m", {0, 1}, {{0, 8}, {8, 16}}}, {"t_n", {2}, {{0, 16}}}};
  std::map<std::pair<size_t, int64_t>, std::vector<torch::Tensor>> expected;  // (key, rank) -> rows per id
  std::map<std::pair<size_t, int64_t>, std::vector<int64_t>> expected_slots;  // (key, rank) -> global slot per id
  for (size_t t = 0; t < tables.size(); ++t) {
    const auto& table = tables[t];
    const int64_t block = (kInput + static_cast<int64_t>(table.shards.size()) - 1) / static_cast<int64_t>(table.shards.size());
    int64_t total = 0;
    for (size_t k : table.keys)
      for (const auto& bag : bags[k]) total += static_cast<int64_t>(bag.size());
    std::map<std::pair<size_t, int64_t>, std::vector<int64_t>> global_slot;  // (key, rank) -> slot per id
    for (int64_t r = 0; r < kWorld; ++r)
      for (size_t k : table.keys)
        for (int64_t i = r * kBatch; i < (r + 1) * kBatch; ++i)
          global_slot[{k, r}].resize(global_slot[{k, r}].size() + bags[k][static_cast<size_t>(i)].size(), -1);
    for (size_t j = 0; j < table.shards.size(); ++j) {
      auto local = std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(
          std::dynamic_pointer_cast<MCHManagedCollisionModuleImpl>(full->managed_collision_collection()->module_for(table.name))
              ->rebuild_with_output_id_range(table.shards[j]));
      local->train();
      local->size_history(total);
      const auto mine = [&](int64_t id) { return id / block == static_cast<int64_t>(j); };
      std::vector<int64_t> ids;
      for (int64_t r = 0; r < kWorld; ++r)
        for (size_t k : table.keys)
          for (int64_t i = r * kBatch; i < (r + 1) * kBatch; ++i)
            for (int64_t id : bags[k][static_cast<size_t>(i)])
              if (mine(id)) ids.push_back(id);
      const torch::Tensor in = torch::tensor(ids, torch::kLong);
      const JtDict remapped = local->remap(local->profile({{"x", JaggedTensor::from_lengths(in, torch::tensor({in.size(0)}))}}));
      const torch::Tensor slots = remapped[0].second.values();
      int64_t at = 0;  // the slots of block j's ids, in the order they were fed
      for (int64_t r = 0; r < kWorld; ++r)
        for (size_t k : table.keys) {
          auto& out = global_slot[{k, r}];
          size_t pos = 0;
          for (int64_t i = r * kBatch; i < (r + 1) * kBatch; ++i)
            for (int64_t id : bags[k][static_cast<size_t>(i)]) {
              if (mine(id)) out[pos] = table.shards[j].first + slots[at++].item<int64_t>();
              ++pos;
            }
        }
    }
    const torch::Tensor weight = ec->table_weight(table.name).detach().clone();
    for (const auto& [where, slots] : global_slot) {
      expected_slots[where] = slots;
      auto& rows = expected[where];
      for (int64_t s : slots) {
        ASSERT_GE(s, 0) << table.name;
        rows.push_back(weight[s]);
      }
    }
  }

  const int port = free_local_port();
  auto run_rank = [&](int64_t rank) {
    auto comm = test::connect_local_rank(rank, kWorld, port);
    ShardedManagedCollisionEmbeddingCollectionImpl sharded(*full, "mc", plan, comm);
    sharded.train();
    const KeyedJaggedTensor input = indices ? with_other_key(rows_of(bags, rank * kBatch, kBatch))
                                            : rows_of(bags, rank * kBatch, kBatch);
    const auto [got, remapped] = sharded.forward(input);
    EXPECT_EQ(remapped.has_value(), indices);
    if (indices)
      expect_remapped(got, remapped, input,
                      {{"C1", expected_slots.at({0, rank})}, {"C2", expected_slots.at({1, rank})},
                       {"C3", expected_slots.at({2, rank})}},
                      rank);
    // outputs: C1@t_m, C2@t_m, C3@t_n in the unsharded order
    ASSERT_EQ(got.size(), 3u);
    const std::vector<std::pair<std::string, size_t>> names = {{"C1", 0}, {"C2", 1}, {"C3", 2}};
    for (size_t o = 0; o < got.size(); ++o) {
      const auto& rows = expected.at({names[o].second, rank});
      const torch::Tensor values = got[o].second.values();
      ASSERT_EQ(values.size(0), static_cast<int64_t>(rows.size())) << got[o].first;
      for (size_t i = 0; i < rows.size(); ++i)
        EXPECT_TRUE(torch::allclose(values[static_cast<int64_t>(i)], rows[i], 0, 1e-6))
            << "rank " << rank << " " << got[o].first << " id " << i;
    }
    // the gathered state: the unsharded keys and shapes; each id in a slot of its block's rows
    const std::vector<TableTensorKind> weights = {TableTensorKind{"", false, true}};
    const StateDict gathered = sharded.gather(state_dict(sharded), weights);
    // A checkpoint's gather, one tensor at a time: the same tensors, each
    // table (under both of its names) assembled in what the allocator gives.
    int allocated = 0;
    const FullTensorAllocator allocate = [&allocated](torch::IntArrayRef sizes, torch::Dtype dtype) {
      ++allocated;
      return torch::zeros(sizes, dtype);
    };
    const StateDict made = made_on_rank_zero(*comm, sharded.deferred_gather(state_dict(sharded), weights, allocate));
    if (rank != 0) {
      EXPECT_TRUE(gathered.empty());
      EXPECT_TRUE(made.empty());
      return;
    }
    EXPECT_EQ(allocated, 4);  // t_m (half on rank 1) and t_n (on rank 1), twice
    ASSERT_EQ(made.size(), gathered.size());
    for (size_t i = 0; i < made.size(); ++i) {
      EXPECT_EQ(made[i].first, gathered[i].first);
      EXPECT_TRUE(torch::equal(made[i].second, gathered[i].second)) << made[i].first;
    }
    const StateDict want = state_dict(*full);
    ASSERT_EQ(gathered.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(gathered[i].first, want[i].first);
      EXPECT_EQ(gathered[i].second.sizes(), want[i].second.sizes()) << want[i].first;
    }
    const std::string prefix = "_managed_collision_collection._managed_collision_modules.t_m.";
    const torch::Tensor ids = find_tensor(gathered, prefix + "_mch_sorted_raw_ids")->clone();
    const torch::Tensor slots = find_tensor(gathered, prefix + "_mch_remapped_ids_mapping")->clone();
    int64_t placed = 0;
    for (int64_t i = 0; i < ids.size(0); ++i) {
      if (ids[i].item<int64_t>() == kEmpty) continue;
      ++placed;
      EXPECT_EQ(slots[i].item<int64_t>() / 8, ids[i].item<int64_t>() / 6) << "id " << ids[i].item<int64_t>();
    }
    EXPECT_GT(placed, 6);  // both shards placed ids
  };
  auto other = std::async(std::launch::async, run_rank, 1);
  run_rank(0);
  other.get();
}

TEST(ShardedManagedCollisionEmbeddingCollection, RoutesEachIdToItsBlockOwnerAndReturnsItsSlotsRow) {
  check_against_rebuilt_modules(/*indices=*/false);
}

TEST(ShardedManagedCollisionEmbeddingCollection, NeedIndicesAndRemappedFeaturesAreTheGlobalSlots) {
  check_against_rebuilt_modules(/*indices=*/true);
}

// Tables table_wise (t_m on rank 0, t_n on rank 1): each holder's module is
// the unsharded one, so every rank's output (rows, need_indices ids) and
// remapped KJT are the unsharded module's forward on the global batch, cut
// to the rank's samples.
TEST(ShardedManagedCollisionEmbeddingCollection, TableWiseIndicesAndRemappedFeaturesEqualTheUnshardedModule) {
  ManagedCollisionEmbeddingCollection full = mc_ec(true, true);
  ManagedCollisionEmbeddingCollection reference = mc_ec(true, true);  // the same values
  ShardingPlan plan;
  plan.world_size = kWorld;
  plan.tables = {TablePlan{"mc", "t_m", ShardingType::table_wise, {Shard{0, 0, kRows, 0, kDim}}},
                 TablePlan{"mc", "t_n", ShardingType::table_wise, {Shard{1, 0, kRows, 0, kDim}}}};
  const auto bags = sequences();
  reference->train();
  const KeyedJaggedTensor global = rows_of(bags, 0, kWorld * kBatch);
  const auto reference_out = reference->forward(global);
  const JaggedTensorDict& want = reference_out.first;
  const std::optional<KeyedJaggedTensor>& want_remapped = reference_out.second;
  ASSERT_TRUE(want_remapped.has_value());
  // rank r's samples [r * B, (r + 1) * B) of a global JaggedTensor's values
  auto samples = [](const torch::Tensor& values, const torch::Tensor& lengths, int64_t rank) {
    const int64_t first = lengths.slice(0, 0, rank * kBatch).sum().item<int64_t>();
    const int64_t n = lengths.slice(0, rank * kBatch, (rank + 1) * kBatch).sum().item<int64_t>();
    return values.narrow(0, first, n);
  };

  const int port = free_local_port();
  auto run_rank = [&](int64_t rank) {
    auto comm = test::connect_local_rank(rank, kWorld, port);
    ShardedManagedCollisionEmbeddingCollectionImpl sharded(*full, "mc", plan, comm);
    sharded.train();
    const KeyedJaggedTensor input = rows_of(bags, rank * kBatch, kBatch);
    const auto [got, remapped] = sharded.forward(input);
    ASSERT_EQ(got.size(), want.size());
    for (size_t o = 0; o < got.size(); ++o) {
      const JaggedTensor& w = want[o].second;
      EXPECT_EQ(got[o].first, want[o].first);
      EXPECT_TRUE(torch::equal(got[o].second.values(), samples(w.values(), w.lengths(), rank))) << got[o].first;
      EXPECT_TRUE(torch::equal(got[o].second.weights(), samples(w.weights(), w.lengths(), rank))) << got[o].first;
    }
    ASSERT_TRUE(remapped.has_value());
    EXPECT_EQ(remapped->keys(), want_remapped->keys());
    const JtDict mine = remapped->to_dict(), all = want_remapped->to_dict();
    for (size_t k = 0; k < all.size(); ++k) {
      EXPECT_TRUE(torch::equal(mine[k].second.lengths(), all[k].second.lengths().slice(0, rank * kBatch, (rank + 1) * kBatch)));
      EXPECT_TRUE(torch::equal(mine[k].second.values(), samples(all[k].second.values(), all[k].second.lengths(), rank)))
          << "rank " << rank << " " << all[k].first;
    }
  };
  auto other = std::async(std::launch::async, run_rank, 1);
  run_rank(0);
  other.get();
}

}  // namespace sharded_mc_embedding_test
}  // namespace recmod::dist
