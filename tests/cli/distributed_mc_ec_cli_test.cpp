// Distributed training of a managed-collision EmbeddingCollection (MC-EC ->
// SequencePool -> Concat -> Linear, beside a plain sharded EBC) with its
// tables row_wise: N local ranks against one process with the same global
// batch, eviction per shard, exact resume, and resuming at another world
// size refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kEmpty = std::numeric_limits<int64_t>::max();
const std::string kMc = "mc_arch._managed_collision_collection._managed_collision_modules.";
const std::string kWeights = "mc_arch._embedding_module.embeddings.";
const std::string kRowWise = "{t_m1: row_wise, t_m2: row_wise}";

// Two managed tables (t_m2 read by two features) over ids in [0, 40)
// (input_hash_size 40), and a plain bag table. `rows` rows per managed
// table; `init` fixes every initial row (weight_init_min = max) when set.
std::string mc_ec_model_yaml(int64_t batch_size, int64_t rows, int64_t interval, bool reset, const std::string& init,
                             const std::string& sharding) {
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
    type: ManagedCollisionEmbeddingCollection
    input: features.sparse
    reset_evicted_rows: )" + std::string(reset ? "true" : "false") + R"(
    tables:
      - {name: t_m1, num_embeddings: )" + std::to_string(rows) + ", embedding_dim: 4, feature_names: [C1]" + fixed + mc + R"(lfu}}
      - {name: t_m2, num_embeddings: )" + std::to_string(rows) + ", embedding_dim: 4, feature_names: [C2, C3]" + fixed + mc + R"(lru}}
  pooled: {type: SequencePool, input: mc_arch, mode: mean}
  bag_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_x, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C3]}
  x0: {type: Concat, inputs: [features.dense, pooled, bag_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.2}
  batch_size: )" + std::to_string(batch_size) + R"(
  epochs: 2
  seed: 5
sharding: )" + sharding + "\n";
}

// 300 rows, one id per sequence (every batch has as many ids per feature as
// rows, so the histories, sized from the first batch, never overflow).
GeneratedData make_mc_data(const std::string& name) {
  GeneratedData d;
  d.dir = fresh_dir(name);
  const std::string shape = " --dense 3 --sparse 3 --cardinality 40 --max-ids 1 --seed 2";
  d.train = d.dir + "/train.rmb";
  auto r = run_recmod("generate --rows 300" + shape + " --out " + d.train);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  d.eval = d.dir + "/eval.rmb";
  r = run_recmod("generate --rows 200 --skip 300" + shape + " --out " + d.eval);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return d;
}

const torch::Tensor& tensor_of(const StateDict& state, const std::string& key) {
  const torch::Tensor* t = find_tensor(state, key);
  if (t == nullptr) throw std::runtime_error("missing key " + key);
  return *t;
}

// raw id -> its slot, for the ids a managed table has placed.
std::map<int64_t, int64_t> slots_of(const StateDict& model, const std::string& table) {
  const auto ids = tensor_of(model, kMc + table + "._mch_sorted_raw_ids");
  const auto slots = tensor_of(model, kMc + table + "._mch_remapped_ids_mapping");
  std::map<int64_t, int64_t> out;
  for (int64_t i = 0; i < ids.size(0); ++i)
    if (ids[i].item<int64_t>() != kEmpty) out[ids[i].item<int64_t>()] = slots[i].item<int64_t>();
  return out;
}

// The optimizer state key of `table`'s rows (the one process's name).
std::string momentum_key(const StateDict& state, const std::string& table) {
  for (const auto& [key, _] : state)
    if (key.rfind("optimizer.embedding.mc_arch.", 0) == 0 && key.find("embeddings." + table + ".weight") != std::string::npos)
      return key;
  throw std::runtime_error("no optimizer state of " + table);
}

// One process with the global batch vs `ranks` ranks: the same losses, the
// same dense and plain-table tensors, and every raw id's embedding row and
// row-wise Adagrad state equal (rows compared id by id: every row starts
// equal, so the slots an id gets do not matter).
void expect_ranks_match_one_process(const std::string& name, int ranks, int64_t per_rank) {
  const GeneratedData d = make_mc_data(name);
  const auto one = write_file(d.dir + "/one.yaml", mc_ec_model_yaml(per_rank * ranks, 48, 1, false, "0.05", kRowWise));
  const auto many = write_file(d.dir + "/many.yaml", mc_ec_model_yaml(per_rank, 48, 1, false, "0.05", kRowWise));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto single = r.output;
  r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many --nproc " +
                 std::to_string(ranks) + " --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("t_m1=row_wise@"));
  const auto last = [](const std::string& out) { return out.substr(out.rfind("last loss")); };
  EXPECT_EQ(last(single).substr(0, 15), last(r.output).substr(0, 15));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5, "logit.");
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5, "bag_arch.");
  const StateDict a = io::load_tensors(d.dir + "/one/model.pt"), b = io::load_tensors(d.dir + "/many/model.pt");
  // the same keys and shapes, in the same order
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.sizes(), b[i].second.sizes()) << a[i].first;
  }
  const StateDict sa = io::load_tensors(d.dir + "/one/trainer_state.pt");
  const StateDict sb = io::load_tensors(d.dir + "/many/trainer_state.pt");
  const int64_t block = (40 + ranks - 1) / ranks, rows_per_rank = 48 / ranks;
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto ids_a = slots_of(a, table), ids_b = slots_of(b, table);
    ASSERT_EQ(ids_a.size(), 40u) << table;  // every id of the data has a slot of its own
    ASSERT_EQ(ids_b.size(), 40u) << table;
    const auto& wa = tensor_of(a, kWeights + table + ".weight");
    const auto& wb = tensor_of(b, kWeights + table + ".weight");
    // TorchRec v0.7.0's second name holds the same tensor
    EXPECT_TRUE(torch::equal(wb, tensor_of(b, "mc_arch._embedding_collection.embeddings." + table + ".weight")));
    const std::string state = momentum_key(sa, table);
    const auto& ma = tensor_of(sa, state);
    const auto& mb = tensor_of(sb, state);
    for (const auto& [id, slot] : ids_b) {
      EXPECT_EQ(slot / rows_per_rank, id / block) << table << " id " << id << ": slot of another rank's block";
      const int64_t slot_a = ids_a.at(id);
      EXPECT_LE((wa[slot_a] - wb[slot]).abs().max().item<double>(), 1e-5) << table << " id " << id;
      EXPECT_LE((ma[slot_a] - mb[slot]).abs().max().item<double>(), 1e-5) << table << " id " << id;
    }
    EXPECT_GT((wb - 0.05).abs().max().item<double>(), 1e-3) << table;  // the rows trained
  }
}

TEST(DistributedMcEcCli, TwoRanksMatchOneProcessIdById) { expect_ranks_match_one_process("dist_mc_ec_two", 2, 16); }

TEST(DistributedMcEcCli, ThreeRanksMatchOneProcessIdById) { expect_ranks_match_one_process("dist_mc_ec_three", 3, 11); }

TEST(DistributedMcEcCli, EvictionRunsPerShardAndResumesExactly) {
  const GeneratedData d = make_mc_data("dist_mc_ec_evict");
  // 12 slots for 40 ids: 6 per rank, ids [0, 20) on rank 0, [20, 40) on rank 1
  const auto two = write_file(d.dir + "/two.yaml", mc_ec_model_yaml(16, 12, 2, true, "", kRowWise));
  auto r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/full --nproc 2 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/part --nproc 2 --steps 10 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::filesystem::copy(d.dir + "/part", d.dir + "/part3", std::filesystem::copy_options::recursive);
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/part --nproc 2 --resume --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // exactly the uninterrupted run (evicted rows re-drawn alike)
  expect_same_tensors(d.dir + "/full/model.pt", d.dir + "/part/model.pt", 0.0);
  expect_same_tensors(d.dir + "/full/trainer_state.pt", d.dir + "/part/trainer_state.pt", 0.0, "optimizer.");
  const StateDict model = io::load_tensors(d.dir + "/full/model.pt");
  for (const std::string table : {"t_m1", "t_m2"}) {
    const auto placed = slots_of(model, table);
    EXPECT_GE(placed.size(), 8u) << table;   // both shards placed ids
    EXPECT_LE(placed.size(), 10u) << table;  // at most 5 per shard (its last slot is the overflow)
    for (const auto& [id, slot] : placed) EXPECT_EQ(slot / 6, id / 20) << table << " id " << id;
  }
  // one process evaluates the checkpoint; so do 2 ranks
  const auto one = write_file(d.dir + "/one.yaml", mc_ec_model_yaml(32, 12, 2, true, "", kRowWise));
  r = run_recmod("eval " + one + " --checkpoint " + d.dir + "/full/model.pt --data " + d.eval + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("eval " + two + " --checkpoint " + d.dir + "/full/model.pt --data " + d.eval + " --json --nproc 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // 3 ranks would need other rows for the placed ids: refused with the reason
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/part3 --nproc 3 --resume --dist-timeout 30");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("resume it with the number of ranks that wrote it"));
}

}  // namespace
}  // namespace recmod::testing
