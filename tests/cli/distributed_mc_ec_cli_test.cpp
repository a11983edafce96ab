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
namespace distributed_mc_ec_cli_test {

using ::testing::HasSubstr;

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

// The optimizer state key of `table`'s rows (the one process's name).
std::string momentum_key(const StateDict& state, const std::string& table) {
  for (const auto& [key, _] : state)
    if (key.rfind("optimizer.embedding.mc_arch.", 0) == 0 && key.find("embeddings." + table + ".weight") != std::string::npos)
      return key;
  throw std::runtime_error("no optimizer state of " + table);
}

// One process with the global batch vs `ranks` ranks, id by id
// (expect_mc_ranks_match_one_process); TorchRec v0.7.0's second name of the
// tables holds the same tensors.
void expect_ranks_match_one_process(const std::string& name, int ranks, int64_t per_rank,
                                    const std::string& flags = "") {
  McLayout layout;
  layout.weights = kWeights;
  layout.second_weights = "mc_arch._embedding_collection.embeddings.";
  layout.momentum_key = momentum_key;
  expect_mc_ranks_match_one_process(
      name, ranks, per_rank, [](int64_t batch) { return mc_ec_model_yaml(batch, 48, 1, false, "0.05", kRowWise); },
      layout, flags);
}

TEST(DistributedMcEcCli, TwoRanksMatchOneProcessIdById) { expect_ranks_match_one_process("dist_mc_ec_two", 2, 16); }

// With --checkpoint-memory 0, rank 0 assembles every gathered table and its
// optimizer state in a file (train::checkpoint_tensor_allocator): the same.
TEST(DistributedMcEcCli, ThreeRanksMatchOneProcessIdById) {
  expect_ranks_match_one_process("dist_mc_ec_three", 3, 11, "--checkpoint-memory 0");
}

TEST(DistributedMcEcCli, EvictionRunsPerShardAndResumesExactly) {
  expect_mc_eviction_resumes_exactly("dist_mc_ec_evict", [](int64_t batch) {
    return mc_ec_model_yaml(batch, 12, 2, true, "", kRowWise);
  });
}

}  // namespace distributed_mc_ec_cli_test
}  // namespace recmod::testing
