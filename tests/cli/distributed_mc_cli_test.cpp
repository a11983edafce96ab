// Distributed training of managed-collision tables (a
// ManagedCollisionEmbeddingBagCollection sharded row_wise, beside a plain
// sharded EBC): N local ranks against one process with the same global
// batch, eviction per shard, exact resume, a warm start, and the refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {
namespace distributed_mc_cli_test {

using ::testing::HasSubstr;

const std::string kWeights = "mc_arch._embedding_bag_collection.embedding_bags.";

// Two managed tables (t_m2 read by two features) over ids in [0, 40)
// (input_hash_size 40), and a plain table. `rows` rows per managed table;
// `init` fixes every initial row (weight_init_min = max) when not empty.
std::string mc_model_yaml(int64_t batch_size, int64_t rows, int64_t interval, bool reset, const std::string& init,
                          const std::string& sharding = "") {
  const std::string mc = ", managed_collision: {zch_size: " + std::to_string(rows) +
                         ", eviction_interval: " + std::to_string(interval) + ", input_hash_size: 40, eviction: ";
  const std::string fixed = init.empty() ? "" : ", weight_init_min: " + init + ", weight_init_max: " + init;
  return R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3]
  hash: mod
  range: 40
nodes:
  mc_arch:
    type: ManagedCollisionEmbeddingBagCollection
    input: features.sparse
    reset_evicted_rows: )" + std::string(reset ? "true" : "false") + R"(
    tables:
      - {name: t_m1, num_embeddings: )" + std::to_string(rows) + ", embedding_dim: 4, feature_names: [C1]" + fixed + mc + R"(lfu}}
      - {name: t_m2, num_embeddings: )" + std::to_string(rows) + ", embedding_dim: 4, feature_names: [C2, C3]" + fixed + mc + R"(lru}}
  bag_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_x, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C3]}
  x0: {type: Concat, inputs: [features.dense, mc_arch, bag_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.2}
  batch_size: )" + std::to_string(batch_size) + R"(
  epochs: 2
  seed: 5
)" + (sharding.empty() ? "" : "sharding: " + sharding + "\n");
}

// TorchRec's layout for managed tables (the planner alone would put these
// small tables table_wise, which is the unsharded module on one rank).
const std::string kRowWise = "{t_m1: row_wise, t_m2: row_wise}";

// One process with the global batch vs `ranks` ranks, id by id
// (expect_mc_ranks_match_one_process).
void expect_ranks_match_one_process(const std::string& name, int ranks, int64_t per_rank,
                                    const std::string& flags = "") {
  McLayout layout;
  layout.weights = kWeights;
  layout.momentum_key = [](const StateDict&, const std::string& table) {
    return "optimizer.embedding.mc_arch._embedding_bag_collection.embedding_bags." + table + ".weight.momentum1";
  };
  expect_mc_ranks_match_one_process(
      name, ranks, per_rank, [](int64_t batch) { return mc_model_yaml(batch, 48, 1, false, "0.05", kRowWise); },
      layout, flags);
}

TEST(DistributedMcCli, TwoRanksMatchOneProcessIdById) { expect_ranks_match_one_process("dist_mc_two", 2, 16); }

// With --checkpoint-memory 0, rank 0 assembles every gathered table and its
// optimizer state in a file (train::checkpoint_tensor_allocator): the same.
TEST(DistributedMcCli, ThreeRanksMatchOneProcessIdById) {
  expect_ranks_match_one_process("dist_mc_three", 3, 11, "--checkpoint-memory 0");
}

TEST(DistributedMcCli, TableWiseManagedTablesMatchOneProcessUnderEviction) {
  // A table_wise managed table is the unsharded module on one rank: even
  // with evictions (12 slots for 40 ids) 2 ranks equal one process, every
  // tensor of model.pt (slot buffers included) and the optimizer state.
  const GeneratedData d = generate_mc_data("dist_mc_table_wise");
  const std::string sharding = "{t_m1: table_wise, t_m2: {type: table_wise, ranks: [1]}}";
  const auto one = write_file(d.dir + "/one.yaml", mc_model_yaml(32, 12, 2, false, "", sharding));
  const auto two = write_file(d.dir + "/two.yaml", mc_model_yaml(16, 12, 2, false, "", sharding));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/two --nproc 2 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("t_m2=table_wise@1"));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/two/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/one/trainer_state.pt", d.dir + "/two/trainer_state.pt", 1e-5, "optimizer.");
  EXPECT_LE(slots_of(io::load_tensors(d.dir + "/two/model.pt"), "t_m1").size(), 11u);  // evictions happened
}

TEST(DistributedMcCli, EvictionRunsPerShardAndResumesExactly) {
  const GeneratedData d = expect_mc_eviction_resumes_exactly(
      "dist_mc_evict", [](int64_t batch) { return mc_model_yaml(batch, 12, 2, true, "", kRowWise); });
  // the checkpoint has the one-process keys and shapes
  const auto r = run_recmod("train " + d.dir + "/one.yaml --data " + d.train + " --out " + d.dir +
                            "/one --steps 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict single = io::load_tensors(d.dir + "/one/model.pt");
  const StateDict model = io::load_tensors(d.dir + "/full/model.pt");
  ASSERT_EQ(single.size(), model.size());
  for (size_t i = 0; i < single.size(); ++i) {
    EXPECT_EQ(single[i].first, model[i].first);
    EXPECT_EQ(single[i].second.sizes(), model[i].second.sizes()) << model[i].first;
  }
}

// A warm start keeps the checkpoint's managed-collision state: 2 ranks
// warm-started from a 2-rank run (row_wise tables, one step with the
// tables' learning rate 0 and no eviction due) end with the checkpoint's
// id -> slot mapping and its rows; 3 ranks from it are refused (the ids
// sit in slots of another id block), naming the table.
TEST(DistributedMcCli, WarmStartKeepsTheCheckpointsIdsAndRows) {
  const GeneratedData d = generate_mc_data("dist_mc_warm");
  const auto trained = write_file(d.dir + "/a.yaml", mc_model_yaml(16, 48, 1, false, "", kRowWise));
  auto r = run_recmod("train " + trained + " --data " + d.train + " --out " + d.dir + "/a --nproc 2 --steps 4 "
                      "--dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto warm = write_file(d.dir + "/b.yaml", mc_model_yaml(16, 48, 100, false, "", kRowWise));
  r = run_recmod("train " + warm + " --data " + d.train + " --out " + d.dir + "/b --nproc 2 --steps 1 --init-from " +
                 d.dir + "/a/model.pt --set training.embedding_optimizer.lr=0 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict a = io::load_tensors(d.dir + "/a/model.pt"), b = io::load_tensors(d.dir + "/b/model.pt");
  McLayout layout;
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto slots_a = slots_of(a, table, layout);
    EXPECT_GT(slots_a.size(), 10u) << table;  // the checkpoint placed ids
    EXPECT_EQ(slots_of(b, table, layout), slots_a) << table;
    EXPECT_TRUE(torch::equal(tensor_of(a, kWeights + table + ".weight"), tensor_of(b, kWeights + table + ".weight")))
        << table;
  }
  r = run_recmod("train " + warm + " --data " + d.train + " --out " + d.dir + "/c --nproc 3 --steps 1 --init-from " +
                 d.dir + "/a/model.pt --dist-timeout 60");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("managed-collision table 't_m1' has id"));
  EXPECT_THAT(r.output, HasSubstr("load it with the number of ranks that wrote it"));
}

TEST(DistributedMcCli, ColumnWiseManagedTableIsRefusedNamingIt) {
  const GeneratedData d = generate_mc_data("dist_mc_cw");
  const auto cfg = write_file(d.dir + "/c.yaml", mc_model_yaml(16, 12, 2, true, "", "{t_m2: column_wise}"));
  const auto r = run_recmod("train " + cfg + " --data " + d.train + " --out " + d.dir + "/r --nproc 2 --dist-timeout 30");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("managed-collision table 't_m2' is planned column_wise"));
  EXPECT_FALSE(std::filesystem::exists(d.dir + "/r/model.pt"));
}

}  // namespace distributed_mc_cli_test
}  // namespace recmod::testing
