// The sharded EmbeddingCollection in isolation: two ranks (threads of this
// process, each with its own Gloo group on 127.0.0.1) run forward_sharded on
// their halves of a batch; every output and every shard's gradient must
// equal the unsharded module's on the whole batch, for table_wise, row_wise
// and column_wise tables in one collection.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <future>
#include <map>
#include <string>
#include <vector>

#include "recmod/dist/communicator.h"
#include "recmod/dist/launch_env.h"
#include "recmod/dist/local_launcher.h"
#include "recmod/dist/planner.h"
#include "recmod/dist/sharded_embedding.h"
#include "support/local_ranks.h"

namespace recmod::dist {
namespace sharded_embedding_test {

const std::vector<std::string> kKeys = {"C1", "C2", "C3"};
constexpr int64_t kWorld = 2, kBatch = 6, kRows = 10, kDim = 5;

// Rows [start, start + n) of every key of a KJT given per key per sample.
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

// A loss that weighs every output element differently: sum(values * w[key]).
torch::Tensor loss_of(const JaggedTensorDict& out, const std::map<std::string, torch::Tensor>& w, int64_t skip_rows) {
  torch::Tensor loss = torch::zeros({});
  for (const auto& [name, jt] : out) {
    const torch::Tensor& weight = w.at(name);
    loss = loss + (jt.values() * weight.narrow(0, skip_rows, jt.values().size(0))).sum();
  }
  return loss;
}

TEST(ShardedEmbeddingCollection, EveryShardingTypeGivesTheUnshardedOutputsAndGradients) {
  torch::manual_seed(3);
  // t_a table_wise on rank 1, t_b row_wise, t_c column_wise over both ranks
  // (3 + 2 columns); C2 feeds t_a and t_b.
  EmbeddingCollection full({EmbeddingConfig(kRows, kDim, "t_a", {"C1", "C2"}), EmbeddingConfig(kRows, kDim, "t_b", {"C2"}),
                            EmbeddingConfig(kRows, kDim, "t_c", {"C3"})},
                           /*need_indices=*/false);
  ShardingPlan plan;
  plan.world_size = kWorld;
  plan.tables = {TablePlan{"seq", "t_a", ShardingType::table_wise, {Shard{1, 0, kRows, 0, kDim}}},
                 TablePlan{"seq", "t_b", ShardingType::row_wise, row_wise_shards(kRows, kDim, kWorld)},
                 TablePlan{"seq", "t_c", ShardingType::column_wise, column_wise_shards(kRows, kDim, {0, 1})}};
  ASSERT_EQ(plan.tables[2].shards[0].cols, 3);

  // Sequences of 0-3 ids over the whole id range (an empty one included).
  std::vector<std::vector<std::vector<int64_t>>> bags(kKeys.size());
  for (size_t k = 0; k < kKeys.size(); ++k)
    for (int64_t i = 0; i < kWorld * kBatch; ++i) {
      std::vector<int64_t> bag;
      for (int64_t j = 0; j < (i + static_cast<int64_t>(k)) % 4; ++j) bag.push_back((i * 7 + j * 3 + static_cast<int64_t>(k)) % kRows);
      bags[k].push_back(bag);
    }

  // The unsharded module on the whole batch; the loss weights per output row.
  const JaggedTensorDict want = full->forward(rows_of(bags, 0, kWorld * kBatch));
  std::map<std::string, torch::Tensor> w;
  for (const auto& [name, jt] : want) w[name] = torch::randn(jt.values().sizes());
  loss_of(want, w, 0).backward();
  std::map<std::string, torch::Tensor> full_grad;
  for (const auto& t : full->embedding_configs()) full_grad[t.name] = full->table_weight(t.name).grad().clone();

  const int port = free_local_port();
  auto run_rank = [&](int64_t rank) {
    auto comm = test::connect_local_rank(rank, kWorld, port);
    ShardedEmbeddingCollectionImpl sharded(*full, "seq", plan, comm);
    // the sample offsets of this rank's rows within each key of the whole batch
    const JaggedTensorDict got = sharded.forward_sharded(rows_of(bags, rank * kBatch, kBatch));
    std::map<std::string, int64_t> skip;
    for (size_t k = 0; k < kKeys.size(); ++k) {
      int64_t ids_before = 0;
      for (int64_t i = 0; i < rank * kBatch; ++i) ids_before += static_cast<int64_t>(bags[k][static_cast<size_t>(i)].size());
      skip[kKeys[k]] = ids_before;
    }
    EXPECT_EQ(got.size(), want.size());
    for (size_t j = 0; j < got.size() && j < want.size(); ++j) {
      const auto& [name, jt] = got[j];
      EXPECT_EQ(name, want[j].first);
      const std::string key = name.substr(0, name.find('@'));
      const torch::Tensor expected = want[j].second.values().narrow(0, skip.at(key), jt.values().size(0));
      EXPECT_TRUE(torch::allclose(jt.values(), expected, 0, 1e-6)) << "rank " << rank << " output " << name;
    }
    torch::Tensor loss = torch::zeros({});
    for (const auto& [name, jt] : got) {
      const std::string key = name.substr(0, name.find('@'));
      loss = loss + (jt.values() * w.at(name).narrow(0, skip.at(key), jt.values().size(0))).sum();
    }
    loss.backward();
    // every shard's gradient is its block of the unsharded gradient
    for (const auto& p : plan.tables)
      for (const auto& s : p.shards) {
        if (s.rank != rank || s.rows == 0) continue;
        StateDict params;
        for (const auto& item : sharded.named_parameters()) params.emplace_back(item.key(), item.value());
        const torch::Tensor* weight = find_tensor(params, "embeddings." + p.table + ".weight");
        if (weight == nullptr) {
          ADD_FAILURE() << "rank " << rank << " lacks " << p.table;
          continue;
        }
        EXPECT_EQ(weight->sizes(), torch::IntArrayRef({s.rows, s.cols})) << p.table;
        const torch::Tensor block = full_grad.at(p.table).narrow(0, s.row_offset, s.rows).narrow(1, s.col_offset, s.cols);
        ASSERT_TRUE(weight->grad().defined()) << "rank " << rank << " " << p.table;
        EXPECT_TRUE(torch::allclose(weight->grad(), block, 0, 1e-5)) << "rank " << rank << " gradient of " << p.table;
      }
  };
  auto other = std::async(std::launch::async, run_rank, 1);
  run_rank(0);
  other.get();
}

}  // namespace sharded_embedding_test
}  // namespace recmod::dist
