// Distributed training of managed-collision tables (a
// ManagedCollisionEmbeddingBagCollection sharded row_wise, beside a plain
// sharded EBC): N local ranks against one process with the same global
// batch, eviction per shard, exact resume, checkpoints loaded at other
// world sizes, `recmod evict` on ranks, and the refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
// Both managed tables whole, on ranks 0 and 1: each the unsharded module on
// one rank, so 2 ranks do exactly what one process does.
const std::string kTableWise = "{t_m1: table_wise, t_m2: {type: table_wise, ranks: [1]}}";

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
      name, ranks, per_rank, [](int64_t batch) { return mc_model_yaml(batch, 48, 1, false, "0.05", kRowWise); }, layout,
      flags);
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
  const auto one = write_file(d.dir + "/one.yaml", mc_model_yaml(32, 12, 2, false, "", kTableWise));
  const auto two = write_file(d.dir + "/two.yaml", mc_model_yaml(16, 12, 2, false, "", kTableWise));
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

// A checkpoint of managed tables loads at any world size: each rank takes
// the ids of its block with their rows, re-placed in its slots when the
// checkpoint was written with another layout. Every id placed (48 slots for
// 40 ids): a one-process checkpoint evaluates alike on 1, 2 and 3 ranks; 3
// ranks warm-started from it (the tables' lr 0, no eviction due) keep every
// id's row; a 2-rank checkpoint resumes on 3 ranks with every id's row and
// optimizer state.
TEST(DistributedMcCli, CheckpointsMoveBetweenWorldSizesIdById) {
  const GeneratedData d = generate_mc_data("dist_mc_move");
  const auto one_cfg = write_file(d.dir + "/one.yaml", mc_model_yaml(32, 48, 1, false, "", kRowWise));
  auto r = run_recmod("train " + one_cfg + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict one = io::load_tensors(d.dir + "/one/model.pt");
  for (const std::string table : {"t_m1", "t_m2"}) ASSERT_EQ(slots_of(one, table).size(), 40u) << table;

  auto metrics_of = [&](const std::string& extra) {
    const auto e =
        run_recmod("eval " + one_cfg + " --checkpoint " + d.dir + "/one/model.pt --data " + d.eval + " --json" + extra);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    return nlohmann::json::parse(e.output.substr(e.output.rfind('{')));
  };
  const auto single = metrics_of(" --threads 1");
  for (const std::string ranks : {"2", "3"}) {
    const auto many = metrics_of(" --nproc " + ranks + " --dist-timeout 60");
    for (const std::string key : {"auc", "log_loss"})
      EXPECT_NEAR(many[key].get<double>(), single[key].get<double>(), 1e-6) << key << ", " << ranks << " ranks";
  }

  const auto warm_cfg = write_file(d.dir + "/warm.yaml", mc_model_yaml(16, 48, 100, false, "", kRowWise));
  r = run_recmod("train " + warm_cfg + " --data " + d.train + " --out " + d.dir + "/warm --nproc 3 --steps 1 " +
                 "--init-from " + d.dir + "/one/model.pt --set training.embedding_optimizer.lr=0 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict warm = io::load_tensors(d.dir + "/warm/model.pt");
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto before = slots_of(one, table), after = slots_of(warm, table);
    ASSERT_EQ(after.size(), 40u) << table;
    const torch::Tensor& w_before = tensor_of(one, kWeights + table + ".weight");
    const torch::Tensor& w_after = tensor_of(warm, kWeights + table + ".weight");
    for (const auto& [id, slot] : after) {
      EXPECT_EQ(slot / 16, id / 14) << table << " id " << id << ": not in a slot of its block's rank";
      EXPECT_TRUE(torch::equal(w_after[slot], w_before[before.at(id)])) << table << " id " << id;
    }
  }

  // Resumed on 3 ranks with no step left, the checkpoint is written again
  // from the 3 ranks' state: every id's row and its row-wise Adagrad state
  // as the 2 ranks wrote them, each id in a slot of its 3-rank block.
  const auto two_cfg = write_file(d.dir + "/two.yaml", mc_model_yaml(16, 48, 1, false, "", kRowWise));
  r = run_recmod("train " + two_cfg + " --data " + d.train + " --out " + d.dir +
                 "/run --nproc 2 --steps 6 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict two = io::load_tensors(d.dir + "/run/model.pt");
  const StateDict two_state = io::load_tensors(d.dir + "/run/trainer_state.pt");
  r = run_recmod("train " + two_cfg + " --data " + d.train + " --out " + d.dir +
                 "/run --nproc 3 --steps 6 --resume "
                 "--dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict three = io::load_tensors(d.dir + "/run/model.pt");
  const StateDict three_state = io::load_tensors(d.dir + "/run/trainer_state.pt");
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto before = slots_of(two, table), after = slots_of(three, table);
    ASSERT_EQ(after.size(), before.size()) << table;
    ASSERT_GT(after.size(), 10u) << table;
    const std::string weight = kWeights + table + ".weight";
    const std::string momentum = "optimizer.embedding." + weight + ".momentum1";
    int64_t moved = 0;
    for (const auto& [id, slot] : after) {
      EXPECT_EQ(slot / 16, id / 14) << table << " id " << id;
      moved += slot != before.at(id);
      EXPECT_TRUE(torch::equal(tensor_of(three, weight)[slot], tensor_of(two, weight)[before.at(id)])) << table << id;
      EXPECT_TRUE(torch::equal(tensor_of(three_state, momentum)[slot], tensor_of(two_state, momentum)[before.at(id)]))
          << table << " id " << id;
    }
    EXPECT_GT(moved, 0) << table;  // the layouts differ
  }
}

// `recmod evict` on ranks: the tables sharded as in training, each shard
// evicting its own ids. table_wise tables are the unsharded modules on one
// rank: 2 ranks with the per-rank batch halved report and write what one
// process does. row_wise (a 2-rank checkpoint): every id counted once, the
// ranks' counts summed, the checkpoint still one process's to evaluate.
TEST(DistributedMcCli, EvictOnRanksMatchesOneProcess) {
  const GeneratedData d = generate_mc_data("dist_mc_evict_cmd");
  const auto one = write_file(d.dir + "/one.yaml", mc_model_yaml(32, 12, 2, false, "", kTableWise));
  const auto two = write_file(d.dir + "/two.yaml", mc_model_yaml(16, 12, 2, false, "", kTableWise));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/run --threads 1 --steps 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto evict = [&](const std::string& cfg, const std::string& checkpoint, const std::string& out,
                   const std::string& extra) {
    const auto e = run_recmod("evict " + cfg + " --checkpoint " + checkpoint + " --data " + d.eval + " --out " + out +
                              " --json" + extra);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    const size_t at = e.output.rfind("{\"checkpoint");
    if (at == std::string::npos) return nlohmann::json();
    return nlohmann::json::parse(e.output.substr(at, e.output.find('\n', at) - at))["tables"];
  };
  const auto single = evict(one, d.dir + "/run/model.pt", d.dir + "/one.pt", " --threads 1");
  const auto ranks = evict(two, d.dir + "/run/model.pt", d.dir + "/two.pt", " --nproc 2 --dist-timeout 60");
  EXPECT_EQ(ranks, single);
  EXPECT_GT(single[0]["evicted"].get<int64_t>(), 0);  // evictions happened
  expect_same_tensors(d.dir + "/one.pt", d.dir + "/two.pt", 0.0);

  r = run_recmod("train " + write_file(d.dir + "/rw.yaml", mc_model_yaml(16, 12, 2, false, "", kRowWise)) + " --data " +
                 d.train + " --out " + d.dir + "/rw --nproc 2 --steps 4 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto whole = evict(one, d.dir + "/rw/model.pt", d.dir + "/rw_one.pt", " --threads 1");
  const auto shards =
      evict(d.dir + "/rw.yaml", d.dir + "/rw/model.pt", d.dir + "/rw_two.pt", " --nproc 2 --dist-timeout 60");
  ASSERT_EQ(shards.size(), whole.size());
  for (size_t t = 0; t < shards.size(); ++t) {
    EXPECT_EQ(shards[t]["ids_seen"], whole[t]["ids_seen"]) << t;
    EXPECT_EQ(shards[t]["distinct_ids"], whole[t]["distinct_ids"]) << t;  // ids < input_hash_size: no hash collisions
    EXPECT_LE(shards[t]["slots_used"].get<int64_t>(), 10) << t;           // 5 ids a shard at most
  }
  r = run_recmod("eval " + one + " --checkpoint " + d.dir + "/rw_two.pt --data " + d.eval + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A managed node is warm-started whole: its tables and id -> slot state
// go together. A checkpoint that gives part of it (the config gained a
// managed table) is refused on ranks, naming the node and a missing key;
// one process takes what matches.
TEST(DistributedMcCli, WarmStartTakesAManagedNodeWholeOrNotAtAll) {
  const GeneratedData d = generate_mc_data("dist_mc_warm_part");
  const auto before = write_file(d.dir + "/a.yaml", mc_model_yaml(16, 12, 2, false, "", kRowWise));
  auto r = run_recmod("train " + before + " --data " + d.train + " --out " + d.dir + "/a --threads 1 --steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string grown = mc_model_yaml(16, 12, 2, false, "", kRowWise);
  const std::string extra =
      "      - {name: t_m3, num_embeddings: 12, embedding_dim: 4, feature_names: [C3], "
      "managed_collision: {zch_size: 12, eviction_interval: 2, input_hash_size: 40, "
      "eviction: lfu}}\n";
  grown.insert(grown.find("  bag_arch:"), extra);
  const auto after = write_file(d.dir + "/b.yaml", grown);
  const std::string warm = " --data " + d.train + " --steps 1 --init-from " + d.dir + "/a/model.pt --init-only mc_arch";
  r = run_recmod("train " + after + warm + " --out " + d.dir + "/b --nproc 2 --dist-timeout 60");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("node 'mc_arch' is a managed-collision collection, which a distributed warm start "
                                  "loads whole"));
  EXPECT_THAT(r.output, HasSubstr("(no 'mc_arch._embedding_bag_collection.embedding_bags.t_m3.weight')"));
  r = run_recmod("train " + after + warm + " --out " + d.dir + "/one --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
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
