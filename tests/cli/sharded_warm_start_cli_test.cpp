// train --nproc N --init-from: each rank copies only its shards out of the
// mapped checkpoint (train::warm_start_sharded) and the run is still the
// one-process warm start with the global batch; the report and the errors
// are one process's. And the chunked copy itself, on a mapped tensor, and
// a resuming rank's optimizer state taken out of a mapped trainer_state.pt.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <future>
#include <string>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/config/model_config.h"
#include "recmod/dist/local_launcher.h"
#include "recmod/dist/table_state.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/distributed.h"
#include "recmod/train/sharded_warm_start.h"
#include "recmod/train/training_setup.h"
#include "support/local_ranks.h"

namespace recmod::testing {
namespace sharded_warm_start_cli_test {

using ::testing::HasSubstr;

// A row_wise table of 41 rows (blocks of 21 and 20), a column_wise one, a
// table_wise one; `tables` drops the last ones for a checkpoint that lacks them.
std::string model_yaml(int64_t batch_size, int tables = 3, int64_t row_wise_rows = 41) {
  std::string yaml = R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3]
  hash: mod
  range: 40
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_r, num_embeddings: )" + std::to_string(row_wise_rows) + R"(, embedding_dim: 4, feature_names: [C1]}
      - {name: t_c, num_embeddings: 40, embedding_dim: 4, feature_names: [C2]}
)";
  if (tables > 2) yaml += "      - {name: t_t, num_embeddings: 40, embedding_dim: 4, feature_names: [C3]}\n";
  yaml += R"(  dense_arch: {type: MLP, input: features.dense, layer_sizes: [4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: sgd, lr: 0.2}
  batch_size: )" + std::to_string(batch_size) + R"(
  seed: 5
sharding:
  t_r: row_wise
  t_c: column_wise
)";
  if (tables > 2) yaml += "  t_t: {type: table_wise, ranks: [1]}\n";
  return yaml;
}

// The warm start's report in a run's output: its first line and the
// indented lines under it (without the "[rank 0] " that --nproc puts before
// each line of rank 0).
std::string report_of(std::string output, const std::string& origin) {
  for (size_t at = output.find("[rank 0] "); at != std::string::npos; at = output.find("[rank 0] ", at))
    output.erase(at, 9);
  const size_t first = output.find("init-from " + origin + ": ");
  if (first == std::string::npos) return "";
  size_t end = output.find('\n', first);
  while (end != std::string::npos && output.compare(end + 1, 2, "  ") == 0) end = output.find('\n', end + 1);
  return output.substr(first, end == std::string::npos ? std::string::npos : end - first);
}

// The message of a run that failed ("recmod: ..." up to the line's end).
std::string error_of(const std::string& output) {
  const size_t at = output.find("recmod: ");
  return at == std::string::npos ? "" : output.substr(at, output.find('\n', at) - at);
}

struct Runs {
  GeneratedData d;
  std::string one, many, source;
};

Runs make_runs(const std::string& name) {
  Runs r{generate_data(name, 300, 3), "", "", ""};
  r.one = write_file(r.d.dir + "/one.yaml", model_yaml(16));
  r.many = write_file(r.d.dir + "/many.yaml", model_yaml(8));
  r.source = r.d.dir + "/source/model.pt";
  const auto run = run_recmod("train " + r.one + " --data " + r.d.train + " --out " + r.d.dir + "/source --threads 1 --steps 10");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  return r;
}

// 2 ranks warm-started from a one-process checkpoint train what one process
// warm-started the same way does with the global batch: the row_wise and
// column_wise shards were copied from the right rows and columns.
TEST(ShardedWarmStart, TwoRanksTrainWhatOneProcessTrains) {
  const Runs r = make_runs("sharded_warm_start_match");
  const std::string from = " --init-from " + r.source + " --steps 6";
  auto one = run_recmod("train " + r.one + " --data " + r.d.train + " --out " + r.d.dir + "/one --threads 1" + from);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto many = run_recmod("train " + r.many + " --data " + r.d.train + " --out " + r.d.dir +
                         "/many --nproc 2 --dist-timeout 60" + from);
  ASSERT_EQ(many.exit_code, 0) << many.output;
  EXPECT_THAT(many.output, HasSubstr("t_r=row_wise@0,1"));
  EXPECT_THAT(many.output, HasSubstr("t_c=column_wise@0,1"));
  EXPECT_EQ(report_of(many.output, r.source), report_of(one.output, r.source)) << many.output;
  EXPECT_THAT(report_of(many.output, r.source), HasSubstr("sparse_arch: 3 of 3 keys loaded"));
  expect_same_tensors(r.d.dir + "/one/model.pt", r.d.dir + "/many/model.pt", 1e-5);
}

// --init-only, a key the checkpoint lacks (drawn on its rank as one
// process initialises it), keys it has in addition: 2 ranks report what one
// process reports and train what it trains; a shape that does not match or
// a node that does not exist is one process's error on every rank.
TEST(ShardedWarmStart, SelectionAndMismatchesReportAsOneProcess) {
  const Runs r = make_runs("sharded_warm_start_report");
  // a checkpoint without t_t: its key is missing; under --init-only sparse_arch the dense keys go unused
  const std::string partial = r.d.dir + "/partial.pt";
  StateDict kept;
  for (const auto& [key, value] : io::load_tensors(r.source))
    if (key != "sparse_arch.embedding_bags.t_t.weight") kept.emplace_back(key, value);
  io::save_tensors(partial, kept);
  const std::string from = " --init-from " + partial + " --init-only sparse_arch --steps 4";
  auto one = run_recmod("train " + r.one + " --data " + r.d.train + " --out " + r.d.dir + "/one --threads 1" + from);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto many = run_recmod("train " + r.many + " --data " + r.d.train + " --out " + r.d.dir +
                         "/many --nproc 2 --dist-timeout 60" + from);
  ASSERT_EQ(many.exit_code, 0) << many.output;
  const std::string report = report_of(one.output, partial);
  EXPECT_THAT(report, HasSubstr("dense_arch: not selected (--init-only)"));
  EXPECT_THAT(report, HasSubstr("sparse_arch: 2 of 3 keys loaded; not in the checkpoint"));
  EXPECT_THAT(report, HasSubstr("checkpoint keys not used"));
  EXPECT_EQ(report_of(many.output, partial), report);
  expect_same_tensors(r.d.dir + "/one/model.pt", r.d.dir + "/many/model.pt", 1e-5);

  // the errors one process gives (warm_start's checks), raised by every
  // rank before anything is drawn
  const std::string wider = write_file(r.d.dir + "/wider.yaml", model_yaml(8, 3, 48));
  const std::string wider_one = write_file(r.d.dir + "/wider_one.yaml", model_yaml(16, 3, 48));
  for (const auto& [tail, expected] :
       {std::pair<std::string, std::string>{"", "key 'sparse_arch.embedding_bags.t_r.weight' has shape [41, 4], the "
                                                "model expects [48, 4]"},
        {" --init-only no_such_node", "--init-only no_such_node: the model has no node with parameters"}}) {
    one = run_recmod("train " + wider_one + " --data " + r.d.train + " --out " + r.d.dir + "/e1 --threads 1 --init-from " +
                     r.source + tail);
    EXPECT_NE(one.exit_code, 0);
    ASSERT_THAT(error_of(one.output), HasSubstr(expected)) << one.output;
    many = run_recmod("train " + wider + " --data " + r.d.train + " --out " + r.d.dir +
                      "/e2 --nproc 2 --dist-timeout 60 --init-from " + r.source + tail);
    EXPECT_EQ(many.exit_code, one.exit_code) << many.output;
    EXPECT_THAT(many.output, HasSubstr("[rank 0] " + error_of(one.output)));
    EXPECT_THAT(many.output, HasSubstr("[rank 1] " + error_of(one.output)));
  }
}

// copy_in_chunks: a block of rows and columns of a mapped tensor, in chunks
// much smaller than it, is the block; the pages it gives back read the same.
TEST(ShardedWarmStart, CopyInChunksCopiesTheBlockOfAMappedTensor) {
  const std::string dir = fresh_dir("sharded_warm_start_chunks");
  const torch::Tensor full = torch::arange(3000 * 24, torch::kFloat).reshape({3000, 24});
  io::save_tensors(dir + "/t.pt", {{"w", full}, {"b", torch::arange(5000, torch::kFloat)}});
  const StateDict mapped = io::map_tensors(dir + "/t.pt", /*release_verified=*/true);
  const torch::Tensor& w = tensor_of(mapped, "w");
  ASSERT_TRUE(io::is_mapped(w));
  torch::Tensor block = torch::zeros({1700, 10});
  train::copy_in_chunks(block, w, 1001, 7, /*chunk_bytes=*/1000);
  EXPECT_TRUE(block.equal(full.narrow(0, 1001, 1700).narrow(1, 7, 10)));
  torch::Tensor whole = torch::zeros({5000});
  train::copy_in_chunks(whole, tensor_of(mapped, "b"), 0, 0, /*chunk_bytes=*/512);
  EXPECT_TRUE(whole.equal(torch::arange(5000, torch::kFloat)));
  EXPECT_TRUE(w.equal(full));  // released pages come back from the file
  io::check_mapped_unchanged(mapped);
}

// A distributed resume's optimizer state (a table-sized one: adagrad): each
// rank's part of the mapped trainer_state.pt is views of the file's tensors
// (its rows of the row_wise table, its columns of the column_wise one, the
// table_wise table on its owner only), no copy; loading it puts exactly
// those values in the rank's own optimizer state. Two ranks as threads.
TEST(ShardedResume, ARankTakesItsOptimizerStateAsViewsOfTheMappedFile) {
  const std::string dir = fresh_dir("sharded_resume_optimizer_state");
  std::string yaml = model_yaml(8);
  const std::string sgd = "embedding_optimizer: {type: sgd, lr: 0.2}";
  yaml.replace(yaml.find(sgd), sgd.size(), "embedding_optimizer: {type: adagrad, lr: 0.2}");
  const config::ModelConfig cfg = config::parse_model_config(config::ConfigNode::load_string(yaml, "m.yaml"));
  // The full state as one process keeps it, every float value distinct.
  StateDict full_state;
  {
    config::ModelGraph one(cfg);
    const train::TrainingSetup training(one, cfg.training, torch::kCPU);
    double at = 0;
    for (const auto& [key, value] : training.state_dict()) {
      torch::Tensor t = value.detach().clone();
      if (t.is_floating_point()) {
        t.copy_(torch::arange(at, at + static_cast<double>(t.numel())).reshape(t.sizes()));
        at += static_cast<double>(t.numel());
      }
      full_state.emplace_back(key, t);
    }
  }
  const std::string path = dir + "/trainer_state.pt";
  io::save_tensors(path, full_state);
  const std::string sum = "embedding.sparse_arch.embedding_bags.";
  const int port = dist::free_local_port();
  auto run_rank = [&](int64_t rank) {
    auto comm = test::connect_local_rank(rank, 2, port);
    config::ModelGraph model(cfg);
    const dist::ShardingPlan plan = train::plan_model(model, cfg, 2);
    train::shard_model(model, plan, comm);
    train::TrainingSetup training(model, cfg.training, torch::kCPU, comm, plan);
    const StateDict full = io::map_tensors(path, /*release_verified=*/true);
    const StateDict mine = train::local_optimizer_state(model, full, cfg.training, path);
    int64_t sliced = 0;
    for (const std::string table : {"t_r", "t_c", "t_t"}) {
      const std::string key = sum + table + ".weight.sum";
      const dist::Shard* shard = nullptr;
      for (const auto& s : plan.find("sparse_arch", table)->shards)
        if (s.rank == rank && dist::holds_rows(s)) shard = &s;
      if (shard == nullptr) {
        EXPECT_EQ(find_tensor(mine, key), nullptr) << "rank " << rank << " " << key;
        continue;
      }
      const torch::Tensor& piece = tensor_of(mine, key);
      const torch::Tensor want =
          tensor_of(full_state, key).narrow(0, shard->row_offset, shard->rows).narrow(1, shard->col_offset, shard->cols);
      EXPECT_TRUE(io::is_mapped(piece)) << "rank " << rank << " " << key << ": a copy, not the file's pages";
      EXPECT_TRUE(piece.is_alias_of(tensor_of(full, key))) << "rank " << rank << " " << key;
      EXPECT_TRUE(piece.equal(want)) << "rank " << rank << " " << key;
      if (table == "t_c") {
        EXPECT_FALSE(piece.is_contiguous()) << "rank " << rank << ": its columns, in place";
      }
      if (table != "t_t") {
        EXPECT_LT(piece.numel(), tensor_of(full, key).numel()) << "rank " << rank << " " << key;
      }
      ++sliced;
    }
    EXPECT_EQ(sliced, rank == 0 ? 2 : 3);  // t_t lives on rank 1
    train::load_local_optimizer_state(training, model, full, cfg.training, path);
    for (const auto& [key, value] : training.state_dict()) {
      EXPECT_FALSE(io::is_mapped(value)) << "rank " << rank << " " << key << ": the optimizer's own memory";
      EXPECT_TRUE(value.equal(tensor_of(mine, key))) << "rank " << rank << " " << key;
    }
  };
  auto other = std::async(std::launch::async, run_rank, 1);
  run_rank(0);
  other.get();
}

}  // namespace sharded_warm_start_cli_test
}  // namespace recmod::testing
