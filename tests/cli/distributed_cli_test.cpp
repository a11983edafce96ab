// Distributed training end to end: N local ranks (recmod --nproc N, or ranks
// started by hand with torchrun's variables) on 127.0.0.1 against one
// process with the same global batch, for every sharding type; resuming at
// another world size; and the faults that must end in a clear error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/example_columns.h"
#include "recmod/data/jsonl.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {
namespace distributed_cli_test {

using ::testing::HasSubstr;

// Four tables, one per sharding type, a feature shared by two tables (C2:
// table_wise SUM and row_wise MEAN), bags of 1-3 ids.
std::string mixed_model_yaml(int64_t batch_size, const std::string& embedding_optimizer, const std::string& sharding) {
  return R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3, C4]
  hash: mod
  range: 40
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C2]}
      - {name: t_b, num_embeddings: 40, embedding_dim: 4, feature_names: [C2], pooling: mean}
      - {name: t_c, num_embeddings: 40, embedding_dim: 4, feature_names: [C3]}
      - {name: t_d, num_embeddings: 40, embedding_dim: 4, feature_names: [C4]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: )" + embedding_optimizer + R"(
  batch_size: )" + std::to_string(batch_size) + R"(
  epochs: 2
  seed: 5
sharding:
)" + sharding;
}

const std::string kAllTypes = "  t_a: table_wise\n  t_b: row_wise\n  t_c: column_wise\n  t_d: data_parallel\n";
// rowwise_adagrad keeps one momentum per column block under column_wise (as
// TorchRec's), which one process cannot match: t_c goes table_wise on rank 1.
const std::string kNoColumnWise =
    "  t_a: table_wise\n  t_b: row_wise\n  t_c: {type: table_wise, ranks: [1]}\n  t_d: data_parallel\n";

using Data = GeneratedData;

Data make_data(const std::string& name, int rows = 300) { return generate_data(name, rows, 4); }

/// Every row of a .rmb file (to write it again in a text format).
data::ExampleColumns rows_of(const std::string& rmb) {
  data::BinaryReader reader(rmb);
  data::ExampleColumns rows(reader.schema());
  while (auto block = reader.read(1000)) rows.append(*block);
  return rows;
}


// One process with the global batch vs `ranks` ranks with batch / ranks each
// (`ranks_flags` added to their command line). `rows` sets how the last,
// short batch splits over the ranks.
void expect_ranks_match_one_process(const std::string& name, int ranks, const std::string& optimizer,
                                    const std::string& sharding, int rows, const std::string& ranks_flags = "") {
  const Data d = make_data(name, rows);
  const int64_t per_rank = 8;
  const auto one = write_file(d.dir + "/one.yaml", mixed_model_yaml(per_rank * ranks, optimizer, sharding));
  const auto many = write_file(d.dir + "/many.yaml", mixed_model_yaml(per_rank, optimizer, sharding));
  const auto single = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const auto r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many --nproc " +
                            std::to_string(ranks) + " --dist-timeout 60" + ranks_flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(std::to_string(ranks) + " ranks"));
  // The same losses: one process's "last loss" line is every rank's.
  const auto last = [](const std::string& out) { return out.substr(out.rfind("last loss")); };
  EXPECT_EQ(last(single.output).substr(0, 15), last(r.output).substr(0, 15));
  // float sums in another order: ~1e-7 per step, well under 1e-5 over 2 epochs (26-38 steps)
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/one/trainer_state.pt", d.dir + "/many/trainer_state.pt", 1e-5, "optimizer.");
}

TEST(DistributedCli, EveryShardingTypeWithSgdMatchesOneProcess) {
  expect_ranks_match_one_process("dist_sgd", 2, "{type: sgd, lr: 0.2}", kAllTypes, 301);  // last batch 7 + 6
}

TEST(DistributedCli, ThreeRanksWithAdagradMatchOneProcess) {
  // last batch: 1 row, so ranks 1 and 2 get none and still take part.
  // --checkpoint-memory 0: rank 0 gathers every sharded table and its
  // optimizer state in a file, which leaves nothing in the run directory.
  expect_ranks_match_one_process("dist_adagrad", 3, "{type: adagrad, lr: 0.2}", kAllTypes, 289,
                                 " --checkpoint-memory 0");
  const auto names = [](const std::string& dir) {
    std::set<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) out.insert(entry.path().filename().string());
    return out;
  };
  const std::string dir = RECMOD_BINARY_DIR "/cli_test_tmp/dist_adagrad";
  EXPECT_EQ(names(dir + "/one"), names(dir + "/many"));
  const auto bad = run_recmod("train " + dir + "/one.yaml --data " + dir + "/train.rmb --out " + dir +
                              "/bad --checkpoint-memory lots");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("recmod: --checkpoint-memory expects a size such as 8G, 512M or 0 (bytes), got 'lots'"));
}

TEST(DistributedCli, RowwiseAdagradMatchesOneProcess) {
  expect_ranks_match_one_process("dist_rowwise", 2, "{type: rowwise_adagrad, lr: 0.2}", kNoColumnWise, 300);
}

// Weighted ids (per-sample weights travel with the ids in the input dist):
// a weighted .rmb written through the library, an is_weighted collection.
TEST(DistributedCli, WeightedFeaturesMatchOneProcess) {
  const std::string dir = fresh_dir("dist_weighted");
  data::DataSchema schema;
  schema.num_dense = 3;
  schema.sparse_features = {"C1", "C2", "C3", "C4"};
  schema.weighted = true;
  data::ExampleColumns columns(schema);
  torch::manual_seed(4);
  const int64_t rows = 250;
  const auto ids = torch::randint(0, 40, {rows * 4 * 3}, torch::kLong);
  const auto weights = torch::rand({rows * 4 * 3});
  const auto bag = torch::randint(0, 4, {rows * 4}, torch::kLong);  // 0-3 ids per bag, empty ones too
  int64_t at = 0;
  for (int64_t r = 0; r < rows; ++r) {
    columns.labels.push_back(static_cast<float>(r % 3 == 0));
    for (int64_t k = 0; k < 3; ++k) columns.dense.push_back(static_cast<float>((r * 7 + k) % 11) / 11.0f);
    for (size_t f = 0; f < 4; ++f) {
      for (int64_t i = 0; i < bag[r * 4 + static_cast<int64_t>(f)].item<int64_t>(); ++i, ++at) {
        columns.sparse[f].ids.push_back(ids[at].item<int64_t>());
        columns.sparse[f].weights.push_back(weights[at].item<float>());
      }
      columns.close_bag(f);
    }
    columns.finish_row();
  }
  const std::string train = dir + "/weighted.rmb";
  data::write_binary(train, columns);
  auto yaml = [](int64_t batch) {
    std::string y = mixed_model_yaml(batch, "{type: adagrad, lr: 0.2}", kAllTypes);
    y.replace(y.find("pooling: mean"), 13, "pooling: sum");
    y.replace(y.find("    input: features.sparse\n"), 27, "    input: features.sparse\n    is_weighted: true\n");
    return y;
  };
  const auto one = write_file(dir + "/one.yaml", yaml(16));
  const auto many = write_file(dir + "/many.yaml", yaml(8));
  auto r = run_recmod("train " + one + " --data " + train + " --out " + dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + many + " --data " + train + " --out " + dir + "/many --nproc 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_tensors(dir + "/one/model.pt", dir + "/many/model.pt", 1e-5);
}

// Each rank parses only its rows of a text file and passes over the others'
// (found by their line ends): JSON lines written from the generated rows, 2
// ranks against one process, the shuffle over the whole file.
TEST(DistributedCli, RanksReadingOnlyTheirRowsOfJsonLinesMatchOneProcess) {
  const Data d = make_data("dist_jsonl", 301);
  const data::ExampleColumns rows = rows_of(d.train);
  const std::string train = d.dir + "/train.jsonl";
  data::write_jsonl(train, rows);
  const auto one = write_file(d.dir + "/one.yaml", mixed_model_yaml(16, "{type: sgd, lr: 0.2}", kAllTypes));
  const auto many = write_file(d.dir + "/many.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.2}", kAllTypes));
  auto r = run_recmod("train " + one + " --data " + train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + many + " --data " + train + " --out " + d.dir + "/many --nproc 2 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5);
  // ... and the .rmb run's model: the same rows in the same batches.
  r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many_rmb --nproc 2 --dist-timeout 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_tensors(d.dir + "/many_rmb/model.pt", d.dir + "/many/model.pt", 1e-5);
}

// --bad-records skip: the ranks find the bad records of their parts of the
// file, share them, and each parses only its rows of the batches one
// skipping process makes (shuffled): the same model and the same report of
// skipped records as one process.
TEST(DistributedCli, RanksSkippingBadRecordsMatchOneProcess) {
  const Data d = make_data("dist_skip", 301);
  const data::ExampleColumns rows = rows_of(d.train);
  const std::string clean = d.dir + "/clean.jsonl";
  data::write_jsonl(clean, rows);
  std::ifstream in(clean);
  std::string text, line;
  for (int n = 0; std::getline(in, line); ++n) {
    text += line + "\n";
    if (n % 40 == 7) text += "{\"label\": \n";  // 8 bad records
  }
  const auto train = write_file(d.dir + "/train.jsonl", text);
  auto yaml = [](int64_t batch) {
    std::string y = mixed_model_yaml(batch, "{type: sgd, lr: 0.2}", kAllTypes);
    y.replace(y.find("  epochs: 2\n"), 12, "  epochs: 2\n  shuffle: true\n");
    return y;
  };
  const auto one = write_file(d.dir + "/one.yaml", yaml(16));
  const auto many = write_file(d.dir + "/many.yaml", yaml(8));
  const std::string skip = " --bad-records skip --max-bad-fraction 0.05";
  auto r1 = run_recmod("train " + one + " --data " + train + " --out " + d.dir + "/one --threads 1" + skip);
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  auto r2 = run_recmod("train " + many + " --data " + train + " --out " + d.dir + "/many --nproc 2 --dist-timeout 60" + skip);
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-5);
  const std::string report = "epoch 1: 301 rows read, 8 bad records skipped (first: " + train + ":9: ";
  EXPECT_THAT(r1.output, HasSubstr(report));
  EXPECT_THAT(r2.output, HasSubstr(report));
}

// recmod eval --nproc N: each rank parses only its rows of each global batch
// (JSON lines: the others' lines are passed over) and the predictions,
// labels and weights are gathered in the global order: the metrics are one
// process's, over every row (201 rows: short last batches split unevenly).
TEST(DistributedCli, EvalOfRanksReadingOnlyTheirRowsMatchesOneProcess) {
  const Data d = make_data("dist_eval_rows", 201);
  const data::ExampleColumns rows = rows_of(d.train);
  const std::string jsonl = d.dir + "/eval.jsonl";
  data::write_jsonl(jsonl, rows);
  const auto cfg = write_file(d.dir + "/m.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.2}", kAllTypes));
  auto r = run_recmod("train " + cfg + " --data " + d.train + " --out " + d.dir + "/run --threads 1 --steps 10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto metrics_of = [&](const std::string& data, const std::string& extra) {
    auto e = run_recmod("eval " + cfg + " --checkpoint " + d.dir + "/run/model.pt --data " + data + " --json" + extra);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    return nlohmann::json::parse(e.output.substr(e.output.rfind('{')));
  };
  const auto one = metrics_of(jsonl, " --threads 1");
  EXPECT_EQ(one["count"], 201);
  for (const std::string ranks : {"2", "3"})
    for (const std::string& data : {jsonl, d.train}) {
      const auto many = metrics_of(data, " --nproc " + ranks + " --dist-timeout 60");
      EXPECT_EQ(many["count"], one["count"]) << ranks << " ranks, " << data;
      for (const std::string key : {"auc", "log_loss", "ne", "accuracy"})
        EXPECT_NEAR(many[key].get<double>(), one[key].get<double>(), 1e-6) << key << ", " << ranks << " ranks, " << data;
    }
}

// Adagrad's table-sized state, every sharding type: each rank takes its
// rows or columns of it out of the mapped trainer_state.pt; the resumed run
// ends with one process's model and optimizer state.
TEST(DistributedCli, ResumesAtAnotherWorldSize) {
  const Data d = make_data("dist_resume");
  const std::string opt = "{type: adagrad, lr: 0.2}";
  const auto one = write_file(d.dir + "/one.yaml", mixed_model_yaml(24, opt, kAllTypes));
  const auto two = write_file(d.dir + "/two.yaml", mixed_model_yaml(12, opt, kAllTypes));
  const auto three = write_file(d.dir + "/three.yaml", mixed_model_yaml(8, opt, kAllTypes));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/run --nproc 2 --steps 7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::filesystem::copy(d.dir + "/run", d.dir + "/bad", std::filesystem::copy_options::recursive);
  r = run_recmod("train " + three + " --data " + d.train + " --out " + d.dir + "/run --nproc 3 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming"));
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/run/model.pt", 1e-5);
  expect_same_tensors(d.dir + "/one/trainer_state.pt", d.dir + "/run/trainer_state.pt", 1e-5, "optimizer.");
  // A trainer state that lacks a table's optimizer state, or names another
  // model.pt, is refused as before, by the ranks that read it.
  const std::string bad_state = d.dir + "/bad/trainer_state.pt";
  const StateDict saved = io::load_tensors(bad_state);
  StateDict lacking;
  for (const auto& [key, value] : saved)
    if (key != "optimizer.embedding.sparse_arch.embedding_bags.t_b.weight.sum") lacking.emplace_back(key, value);
  ASSERT_EQ(lacking.size() + 1, saved.size());
  io::save_tensors(bad_state, lacking);
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/bad --nproc 2 --resume --dist-timeout 30");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(bad_state + ": missing key 'embedding_bags.t_b.weight.sum'"));
  io::save_tensors(bad_state, saved);
  std::filesystem::copy_file(d.dir + "/one/model.pt", d.dir + "/bad/model.pt",
                             std::filesystem::copy_options::overwrite_existing);
  r = run_recmod("train " + two + " --data " + d.train + " --out " + d.dir + "/bad --nproc 2 --resume --dist-timeout 30");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model.pt is not the model " + bad_state));
  // and a one-process eval of the distributed checkpoint equals a 2-rank eval
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

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// torchrun's variables for rank `rank` of 2 at `port`.
std::string rank_env(int rank, int port) {
  return "RANK=" + std::to_string(rank) + " WORLD_SIZE=2 LOCAL_RANK=" + std::to_string(rank) +
         " LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " ";
}

RunResult run_shell(const std::string& script) { return run_command("sh -c '" + script + "' 2>&1"); }

// --init-from at 2 ranks: each rank loads its rows/columns of every table
// (all four sharding types) and the dense parameters from a one-process
// checkpoint; N steps later model.pt is the one-process run's, warm-started
// the same way with the global batch. --init-only restricts it as in one process.
TEST(DistributedCli, InitFromWarmStartsEveryRanksShards) {
  const Data d = make_data("dist_init_from", 300);
  const auto one = write_file(d.dir + "/one.yaml", mixed_model_yaml(16, "{type: sgd, lr: 0.2}", kAllTypes));
  const auto many = write_file(d.dir + "/many.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.2}", kAllTypes));
  auto r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/source --threads 1 --steps 10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string from = " --init-from " + d.dir + "/source/model.pt --steps 6";
  for (const std::string only : {"", " --init-only sparse_arch"}) {
    const std::string tag = only.empty() ? "all" : "sparse";
    r = run_recmod("train " + one + " --data " + d.train + " --out " + d.dir + "/one_" + tag + " --threads 1" + from + only);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_recmod("train " + many + " --data " + d.train + " --out " + d.dir + "/many_" + tag + " --nproc 2 --dist-timeout 60" +
                   from + only);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("2 ranks"));
    const size_t first = r.output.find("init-from " + d.dir + "/source/model.pt: ");
    ASSERT_NE(first, std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("init-from " + d.dir + "/source/model.pt: ", first + 1), std::string::npos)
        << "reported once, by rank 0: " << r.output;
    EXPECT_THAT(r.output, HasSubstr(only.empty() ? "dense_arch: 2 of 2 keys loaded"
                                                 : "dense_arch: not selected (--init-only), kept its initialisation"));
    EXPECT_THAT(r.output, HasSubstr("sparse_arch: 4 of 4 keys loaded"));
    expect_same_tensors(d.dir + "/one_" + tag + "/model.pt", d.dir + "/many_" + tag + "/model.pt", 1e-5);
  }
  // --init-only kept dense_arch's initialisation: its values differ from the full warm start's
  const StateDict all = io::load_tensors(d.dir + "/many_all/model.pt");
  const StateDict sparse = io::load_tensors(d.dir + "/many_sparse/model.pt");
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].first.rfind("dense_arch.", 0) == 0) {
      EXPECT_FALSE(all[i].second.allclose(sparse[i].second)) << all[i].first;
    }
  }
  // a key whose shape does not match is still an error naming it
  std::string wider = mixed_model_yaml(8, "{type: sgd, lr: 0.2}", kAllTypes);
  wider.replace(wider.find("name: t_b, num_embeddings: 40"), 29, "name: t_b, num_embeddings: 48");
  r = run_recmod("train " + write_file(d.dir + "/wider.yaml", wider) + " --data " + d.train + " --out " + d.dir +
                 "/wider --nproc 2 --dist-timeout 60" + from);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("key 'sparse_arch.embedding_bags.t_b.weight' has shape [40, 4], the model expects [48, 4]"));
}

TEST(DistributedCli, RanksStartedWithDifferentArgumentsAreRefused) {
  const Data d = make_data("dist_mismatch");
  const auto cfg = write_file(d.dir + "/m.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.1}", kAllTypes));
  const int port = free_port();
  const std::string bin = RECMOD_BIN;
  const std::string common = " train " + cfg + " --data " + d.train + " --dist-timeout 30 --out " + d.dir;
  // rank 1 asks for other steps than rank 0: both refuse before training
  const auto r = run_shell(rank_env(1, port) + bin + common + "/r --steps 3 > " + d.dir + "/rank1.log 2>&1 & " +
                           rank_env(0, port) + bin + common + "/r --steps 5; echo rank0=$?; wait $!; echo rank1=$?; cat " +
                           d.dir + "/rank1.log");
  EXPECT_THAT(r.output, HasSubstr("rank0=1"));
  EXPECT_THAT(r.output, HasSubstr("rank1=1"));
  EXPECT_THAT(r.output, HasSubstr("recmod: the ranks disagree on the command line and config file: rank(s) [1]"));
  EXPECT_FALSE(std::filesystem::exists(d.dir + "/r/model.pt"));
}

TEST(DistributedCli, AKilledRankEndsTheOthersWithAMessage) {
  const Data d = make_data("dist_kill");
  const auto cfg = write_file(d.dir + "/k.yaml", mixed_model_yaml(4, "{type: sgd, lr: 0.1}", kAllTypes));
  const int port = free_port();
  const std::string bin = RECMOD_BIN;
  const std::string common = " train " + cfg + " --data " + d.train + " --dist-timeout 60 --steps 100000000 --out " + d.dir + "/r";
  // rank 1 runs in the background and is killed once the ranks train (rank
  // 0's metrics file has its first line; a fixed 4 s sleep killed it before
  // it joined on a slow sanitizer run in CI, and rank 0 then waited out the
  // rendezvous); rank 0 must end on its own, bounded.
  const auto start = std::chrono::steady_clock::now();
  const std::string metrics = d.dir + "/r/metrics.jsonl";
  const auto r = run_shell(rank_env(1, port) + bin + common + " > /dev/null 2>&1 & pid=$!; (for i in $(seq 900); do [ -s " +
                           metrics + " ] && break; sleep 0.1; done; kill -9 $pid) & " + "timeout 150 env " +
                           rank_env(0, port) + bin + common + "; echo rank0=$?");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(r.output, HasSubstr("rank0=1"));  // not 124 (timeout) and not 0
  EXPECT_THAT(r.output, HasSubstr("recmod: rank 0:"));
  EXPECT_THAT(r.output, HasSubstr("another rank exited"));
  EXPECT_LT(seconds, 140);
}

TEST(DistributedCli, SigintStopsEveryRankWithOneCheckpoint) {
  const Data d = make_data("dist_sigint");
  const auto cfg = write_file(d.dir + "/s.yaml", mixed_model_yaml(4, "{type: adagrad, lr: 0.1}", kAllTypes));
  const std::string run = d.dir + "/r";
  const std::string train = std::string(RECMOD_BIN) + " train " + cfg + " --data " + d.train + " --out " + run;
  // the supervisor gets SIGINT (as from Ctrl-C) once the ranks train (rank
  // 0's metrics file has its first line; a fixed 5 s sleep came before rank 1
  // had reached training on a slow sanitizer CI run, and a rank still starting
  // up dies of the forwarded SIGINT)
  const std::string metrics = run + "/metrics.jsonl";
  const auto r = run_shell(train + " --nproc 2 --steps 100000000 & pid=$!; for i in $(seq 900); do [ -s " + metrics +
                           " ] && break; sleep 0.1; done; kill -INT $pid; wait $pid; echo code=$?");
  EXPECT_THAT(r.output, HasSubstr("code=130")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[rank 0] interrupted: checkpoint at step"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("exited with code")));  // a requested stop, not a failure
  // one consistent checkpoint: it resumes, at another world size too
  const auto resumed = run_recmod("train " + cfg + " --data " + d.train + " --out " + run + " --resume --nproc 3 --steps 1");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resuming"));
}

TEST(DistributedCli, ProfileRunsSharded) {
  const std::string dir = fresh_dir("dist_profile");
  const std::string placed =
      "  t_a: {type: table_wise, ranks: [0]}\n  t_b: row_wise\n  t_c: {type: table_wise, ranks: [1]}\n  t_d: data_parallel\n";
  const auto cfg = write_file(dir + "/p.yaml", mixed_model_yaml(8, "{type: rowwise_adagrad, lr: 0.1}", placed));
  const auto r = run_recmod("profile " + cfg + " --synthetic --steps 3 --warmup 1 --trace '' --nproc 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rank 0 of 2 ranks; batch 16 in all (8 per rank)"));
  // rank 0 holds t_a, half of t_b and a replica of t_d, not t_c
  EXPECT_THAT(r.output, HasSubstr("sparse_arch.embedding_bags.t_a.weight"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("sparse_arch.embedding_bags.t_c.weight")));
  // on a data file each rank parses only its rows (rank mode); a text file
  // whose rows run out names the step, as in one process
  const Data d = make_data("dist_profile_data", 100);
  auto p = run_recmod("profile " + cfg + " --data " + d.train + " --steps 3 --warmup 1 --trace '' --nproc 2");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_THAT(p.output, HasSubstr("rank 0 of 2 ranks; batch 16 in all (8 per rank)"));
  p = run_recmod("profile " + cfg + " --data " + d.train + " --steps 7 --warmup 1 --trace '' --nproc 2");
  EXPECT_NE(p.exit_code, 0);
  EXPECT_THAT(p.output, HasSubstr("the data ran out after 7 batches"));
}

TEST(DistributedCli, ABadLaunchEnvironmentIsAUsageError) {
  const Data d = make_data("dist_env");
  const auto cfg = write_file(d.dir + "/e.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.1}", kAllTypes));
  const auto r = run_shell("RANK=2 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29999 " + std::string(RECMOD_BIN) +
                           " train " + cfg + " --data " + d.train + " --out " + d.dir + "/r; echo code=$?");
  EXPECT_THAT(r.output, HasSubstr("code=2"));
  EXPECT_THAT(r.output, HasSubstr("RANK"));
}

TEST(DistributedCli, ATakenPortIsNamed) {
  const Data d = make_data("dist_port");
  const auto cfg = write_file(d.dir + "/p.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.1}", kAllTypes));
  const int port = free_port();
  const std::string cmd = std::string(RECMOD_BIN) + " train " + cfg + " --data " + d.train + " --dist-timeout 5 --out " + d.dir;
  // a first rank 0 holds the port while it waits for its rank 1 (which never comes)
  const auto r = run_shell(rank_env(0, port) + cmd + "/a > /dev/null 2>&1 & sleep 2; " + rank_env(0, port) + cmd +
                           "/b; echo code=$?; wait");
  EXPECT_THAT(r.output, HasSubstr("code=1"));
  EXPECT_THAT(r.output, HasSubstr("MASTER_PORT"));
  EXPECT_THAT(r.output, HasSubstr(std::to_string(port)));
}

// Every collective counts (Traffic::collectives): a step of a model with
// one sharded EmbeddingBagCollection costs exactly 5, the lengths, ids,
// pooled rows and their gradients (4 all-to-alls) and the dense
// all-reduce, which also carries the loss and the ranks' stop requests;
// the batch sizes come from the trainer's split, not an all-gather.
TEST(DistributedCli, AStepCostsFiveCollectives) {
  const Data d = make_data("dist_collectives");
  const auto cfg = write_file(d.dir + "/c.yaml", mixed_model_yaml(8, "{type: sgd, lr: 0.1}", kNoColumnWise) +
                                                     "\n");
  const auto collectives = [&](int steps) -> int64_t {
    const auto r = run_recmod("train " + cfg + " --data " + d.train + " --out " + d.dir + "/s" + std::to_string(steps) +
                              " --nproc 2 --dist-timeout 60 --set training.log_interval=0 --steps " + std::to_string(steps));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto at = r.output.find("; collectives ");
    if (at == std::string::npos) return -1;
    return std::stoll(r.output.substr(at + 14));
  };
  const int64_t five = collectives(5), fifteen = collectives(15);
  ASSERT_GT(five, 0);
  EXPECT_EQ(fifteen - five, 10 * 5);
}

}  // namespace distributed_cli_test
}  // namespace recmod::testing
