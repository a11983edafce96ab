// Distributed training of a sequence model (EmbeddingCollection ->
// SequencePool -> Concat -> Linear) with sharded EmbeddingCollection tables
// (table_wise, row_wise, data_parallel in one collection): N local ranks
// against one process with the same global batch, resuming at another world
// size, distributed eval, and column_wise tables.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {
namespace distributed_ec_cli_test {

using ::testing::HasSubstr;

// Three tables of one EmbeddingCollection; C2 feeds two of them (outputs
// "C2@t_a" and "C2@t_b"); sequences of 1-3 ids.
// With `with_bag`, also an EmbeddingBagCollection (table t_x) into the Concat.
std::string sequence_model_yaml(int64_t batch_size, const std::string& embedding_optimizer, const std::string& sharding,
                                bool with_bag = false) {
  const std::string bag = with_bag ? R"(  bag_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_x, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C3]}
)"
                                   : "";
  return R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3]
  hash: mod
  range: 40
nodes:
)" + bag + R"(  seq_arch:
    type: EmbeddingCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C2]}
      - {name: t_b, num_embeddings: 40, embedding_dim: 4, feature_names: [C2, C3]}
      - {name: t_c, num_embeddings: 40, embedding_dim: 4, feature_names: [C3]}
  pooled: {type: SequencePool, input: seq_arch, mode: mean}
  x0: {type: Concat, inputs: [features.dense, pooled)" + (with_bag ? ", bag_arch" : "") + R"(]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: )" + embedding_optimizer + R"(
  batch_size: )" + std::to_string(batch_size) + R"(
  epochs: 2
  seed: 5
sharding: )" + sharding + "\n";
}

const std::string kMixed = "{t_a: table_wise, t_b: row_wise, t_c: data_parallel}";
const std::string kAdagrad = "{type: adagrad, lr: 0.2}";
const std::string kRowwiseAdagrad = "{type: rowwise_adagrad, lr: 0.2}";

using Data = GeneratedData;

Data make_data(const std::string& name, int rows = 300) { return generate_data(name, rows, 3); }


// The embedding tables moved in training (so the comparison is not vacuous).
void expect_tables_trained(const std::string& model_path, const std::string& optimizer_path, const std::string& early_model,
                           bool with_state) {
  const StateDict trained = io::load_tensors(model_path), initial = io::load_tensors(early_model);
  for (const std::string table : {"t_a", "t_b", "t_c"}) {
    const std::string key = "seq_arch.embeddings." + table + ".weight";
    const torch::Tensor* a = find_tensor(trained, key);
    const torch::Tensor* b = find_tensor(initial, key);
    ASSERT_TRUE(a && b) << key;
    EXPECT_GT((*a - *b).abs().max().item<double>(), 1e-3) << key;
  }
  if (!with_state) return;  // sgd keeps none
  bool has_state = false;
  for (const auto& [key, _] : io::load_tensors(optimizer_path))
    has_state = has_state || key.find("optimizer.embedding.seq_arch.embeddings.t_b.weight") != std::string::npos;
  EXPECT_TRUE(has_state) << "no optimizer state of t_b in " << optimizer_path;
}

// One process with the global batch vs `ranks` ranks with batch / ranks each.
void expect_ranks_match_one_process(const std::string& name, int ranks, const std::string& optimizer,
                                    const std::string& sharding, int rows = 300, int64_t per_rank = 8,
                                    bool with_bag = false) {
  const Data d = make_data(name, rows);
  const auto one = write_file(d.dir + "/one.yaml", sequence_model_yaml(per_rank * ranks, optimizer, sharding, with_bag));
  const auto many = write_file(d.dir + "/many.yaml", sequence_model_yaml(per_rank, optimizer, sharding, with_bag));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto single = r.output;
  r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many --nproc " + std::to_string(ranks) +
                 " --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(std::to_string(ranks) + " ranks"));
  const auto last = [](const std::string& out) { return out.substr(out.rfind("last loss")); };
  EXPECT_EQ(last(single).substr(0, 15), last(r.output).substr(0, 15));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/one/trainer_state.pt", d.dir + "/many/trainer_state.pt", 1e-5, "optimizer.");
  // and the tables did train (not a vacuous match): they moved after step 1
  r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/early --threads 1 --steps 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_tables_trained(d.dir + "/many/model.pt", d.dir + "/many/trainer_state.pt", d.dir + "/early/model.pt",
                        optimizer.find("sgd") == std::string::npos);
}

TEST(DistributedEcCli, TwoRanksWithAdagradMatchOneProcess) {
  expect_ranks_match_one_process("dist_ec_adagrad2", 2, kAdagrad, kMixed);
}

TEST(DistributedEcCli, ThreeRanksWithAdagradMatchOneProcess) {
  expect_ranks_match_one_process("dist_ec_adagrad3", 3, kAdagrad, kMixed);
}

TEST(DistributedEcCli, TwoRanksWithRowwiseAdagradMatchOneProcess) {
  expect_ranks_match_one_process("dist_ec_rowwise2", 2, kRowwiseAdagrad, kMixed);
}

TEST(DistributedEcCli, ThreeRanksWithRowwiseAdagradMatchOneProcess) {
  // t_a on the last rank: rank 0 holds only a row block of t_b
  expect_ranks_match_one_process("dist_ec_rowwise3", 3, kRowwiseAdagrad,
                                 "{t_a: {type: table_wise, ranks: [2]}, t_b: row_wise, t_c: row_wise}");
}

TEST(DistributedEcCli, ARankWithNoRowsOfTheLastBatchStillExchanges) {
  // 301 rows, global batch 20: the last batch has one row, rank 1 none
  expect_ranks_match_one_process("dist_ec_short", 2, kAdagrad, kMixed, 301, 10);
}

TEST(DistributedEcCli, WithAShardedEmbeddingBagCollectionMatchesOneProcess) {
  // the fused EBC's optimizer state comes last in both files, as in one process
  expect_ranks_match_one_process("dist_ec_bag", 2, kAdagrad, "{t_a: table_wise, t_b: row_wise, t_c: data_parallel, t_x: row_wise}",
                                 300, 8, /*with_bag=*/true);
}

TEST(DistributedEcCli, AllDataParallelStaysReplicatedAndMatches) {
  expect_ranks_match_one_process("dist_ec_dp", 2, "{type: sgd, lr: 0.2}",
                                 "{t_a: data_parallel, t_b: data_parallel, t_c: data_parallel}");
}

TEST(DistributedEcCli, ResumesAtAnotherWorldSizeAndEvalsDistributed) {
  const Data d = make_data("dist_ec_resume");
  const auto one = write_file(d.dir + "/one.yaml", sequence_model_yaml(24, kAdagrad, kMixed));
  const auto two = write_file(d.dir + "/two.yaml", sequence_model_yaml(12, kAdagrad, kMixed));
  const auto three = write_file(d.dir + "/three.yaml", sequence_model_yaml(8, kAdagrad, kMixed));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/run --nproc 2 --steps 7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + three + " --data " + d.train + " --out " + d.dir + "/run --nproc 3 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming"));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/run/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/one/trainer_state.pt", d.dir + "/run/trainer_state.pt", 1e-5, "optimizer.");
  // a one-process eval of the distributed checkpoint equals a 2-rank eval
  auto e1 = run_recmod("eval " + one + " --checkpoint " + d.dir + "/run/model.pt --data " + d.eval + " --json");
  auto e2 = run_recmod("eval " + two + " --checkpoint " + d.dir + "/run/model.pt --data " + d.eval + " --json --nproc 2");
  ASSERT_EQ(e1.exit_code, 0) << e1.output;
  ASSERT_EQ(e2.exit_code, 0) << e2.output;
  const auto m1 = nlohmann::json::parse(e1.output.substr(e1.output.rfind('{')));
  const auto m2 = nlohmann::json::parse(e2.output.substr(e2.output.rfind('{')));
  EXPECT_EQ(m1["count"], m2["count"]);
  EXPECT_NEAR(m1["auc"].get<double>(), m2["auc"].get<double>(), 1e-6);
  EXPECT_NEAR(m1["log_loss"].get<double>(), m2["log_loss"].get<double>(), 1e-6);
}

// column_wise (TorchRec's semantics: each rank holds a block of columns of
// every row; every id goes to every block's holder and the blocks come back
// concatenated): SGD is exact against one process. 3 ranks split t_b's 4
// columns 2 + 1 + 1.
TEST(DistributedEcCli, ColumnWiseWithSgdMatchesOneProcess) {
  expect_ranks_match_one_process("dist_ec_cw_sgd2", 2, "{type: sgd, lr: 0.2}",
                                 "{t_a: table_wise, t_b: column_wise, t_c: row_wise}");
  expect_ranks_match_one_process("dist_ec_cw_sgd3", 3, "{type: sgd, lr: 0.2}",
                                 "{t_a: column_wise, t_b: {type: column_wise, ranks: [2, 0]}, t_c: data_parallel}");
}

// Row-wise Adagrad keeps one momentum per column block (each block is a table
// of its own for the optimizer, as in TorchRec), which one process cannot
// reproduce; the same blocks at two world sizes with the same global batch
// train the same model, and the checkpoint holds the blocks' mean momentum
// under the unsharded key and shape.
TEST(DistributedEcCli, ColumnWiseWithRowwiseAdagradIsTheSameAtEveryWorldSize) {
  const Data d = make_data("dist_ec_cw_rowwise");
  const std::string sharding = "{t_a: table_wise, t_b: {type: column_wise, ranks: [0, 1]}, t_c: row_wise}";
  const auto two = write_file(d.dir + "/two.yaml", sequence_model_yaml(12, kRowwiseAdagrad, sharding));
  const auto three = write_file(d.dir + "/three.yaml", sequence_model_yaml(8, kRowwiseAdagrad, sharding));
  auto r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/two --nproc 2 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + three + " --data " + d.train + " --out " + d.dir + "/three --nproc 3 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_tensors(d.dir + "/two/model.pt", d.dir + "/three/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/two/trainer_state.pt", d.dir + "/three/trainer_state.pt", 1e-5, "optimizer.");
  const StateDict state = io::load_tensors(d.dir + "/two/trainer_state.pt");
  const torch::Tensor* momentum = nullptr;
  for (const auto& [key, value] : state)
    if (key.find("embedding.seq_arch.embeddings.t_b.weight") != std::string::npos) momentum = &value;
  ASSERT_NE(momentum, nullptr);
  EXPECT_EQ(momentum->sizes(), torch::IntArrayRef({40}));
  EXPECT_GT(momentum->abs().max().item<double>(), 0.0);
  // and one process differs (the per-block momentum is not the row's)
  const auto one = write_file(d.dir + "/one.yaml", sequence_model_yaml(24, kRowwiseAdagrad, sharding));
  r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StateDict a = io::load_tensors(d.dir + "/one/model.pt"), b = io::load_tensors(d.dir + "/two/model.pt");
  EXPECT_GT((*find_tensor(a, "seq_arch.embeddings.t_b.weight") - *find_tensor(b, "seq_arch.embeddings.t_b.weight"))
                .abs()
                .max()
                .item<double>(),
            1e-4);
}

// A column_wise checkpoint resumed at another world size reshards its
// columns (2 blocks of 2 -> 3 blocks of 2 + 1 + 1) and, with SGD, ends where
// one process does; a one-process eval of it equals a 3-rank eval.
TEST(DistributedEcCli, ColumnWiseResumesAtAnotherWorldSize) {
  const Data d = make_data("dist_ec_cw_resume");
  const std::string sgd = "{type: sgd, lr: 0.2}";
  const std::string sharding = "{t_a: row_wise, t_b: column_wise, t_c: column_wise}";
  const auto one = write_file(d.dir + "/one.yaml", sequence_model_yaml(24, sgd, sharding));
  const auto two = write_file(d.dir + "/two.yaml", sequence_model_yaml(12, sgd, sharding));
  const auto three = write_file(d.dir + "/three.yaml", sequence_model_yaml(8, sgd, sharding));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/run --nproc 2 --steps 7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + three + " --data " + d.train + " --out " + d.dir + "/run --nproc 3 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming"));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/run/model.pt", 1e-5);
  auto e1 = run_recmod("eval " + one + " --checkpoint " + d.dir + "/run/model.pt --data " + d.eval + " --json");
  auto e3 = run_recmod("eval " + three + " --checkpoint " + d.dir + "/run/model.pt --data " + d.eval + " --json --nproc 3");
  ASSERT_EQ(e1.exit_code, 0) << e1.output;
  ASSERT_EQ(e3.exit_code, 0) << e3.output;
  const auto m1 = nlohmann::json::parse(e1.output.substr(e1.output.rfind('{')));
  const auto m3 = nlohmann::json::parse(e3.output.substr(e3.output.rfind('{')));
  EXPECT_EQ(m1["count"], m3["count"]);
  EXPECT_NEAR(m1["auc"].get<double>(), m3["auc"].get<double>(), 1e-6);
  EXPECT_NEAR(m1["log_loss"].get<double>(), m3["log_loss"].get<double>(), 1e-6);
}

}  // namespace distributed_ec_cli_test
}  // namespace recmod::testing
