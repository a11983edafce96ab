// recmod plan end to end: the MLPerf DLRM-v2 config (about 195 GiB of tables
// and optimizer state) planned for 8, 64 and 512 ranks without building it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <regex>
#include <sstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace plan_cli_test {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kMlperf = std::string(RECMOD_SOURCE_DIR) + "/configs/plan/dlrm_v2_criteo_1tb.yaml";

// The per-rank lines of the text output: "<rank>  <bytes> ..." after the header "rank ...".
std::vector<std::string> rank_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  std::string line;
  bool in_ranks = false;
  while (std::getline(in, line)) {
    if (line.rfind("rank ", 0) == 0) {
      in_ranks = true;
      continue;
    }
    if (in_ranks && line.empty()) break;
    if (in_ranks) lines.push_back(line);
  }
  return lines;
}

TEST(PlanCliTest, PlansMlperfDlrmV2AtScaleQuickly) {
  for (int world : {8, 64, 512}) {
    const auto start = std::chrono::steady_clock::now();
    auto r = run_recmod("plan " + kMlperf + " --world-size " + std::to_string(world));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("26 tables on " + std::to_string(world) + " ranks"));
    EXPECT_THAT(r.output, HasSubstr("sparse_arch.t_C1 "));
    EXPECT_THAT(r.output, HasSubstr("40000000 x 128"));
    const auto lines = rank_lines(r.output);
    ASSERT_EQ(lines.size(), static_cast<size_t>(world)) << r.output.substr(0, 3000);
    for (int rank = 0; rank < world; ++rank)
      EXPECT_THAT(lines[static_cast<size_t>(rank)], StartsWith(std::to_string(rank) + " "));
    // The 40M-row tables cannot be whole on one of 8+ ranks of a fair share.
    EXPECT_THAT(r.output, ContainsRegex("sparse_arch.t_C1 +row_wise +0-" + std::to_string(world - 1) + " "));
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, std::regex("balance \\(max/mean of per-rank bytes\\): ([0-9.]+)")));
    const double balance = std::stod(m[1]);
    EXPECT_GE(balance, 1.0);
    EXPECT_LE(balance, 1.11) << "within the planner's 10% slack (planner.h)";
    // A calculation, not an allocation: far below what building the model would take.
    EXPECT_LT(seconds, 30) << world << " ranks took " << seconds << " s";
  }
}

TEST(PlanCliTest, JsonHasEveryRankAndEveryTable) {
  auto r = run_recmod("plan " + kMlperf +
                      " --world-size 64 --memory-per-rank 8G --batch-size 1024 --pooling-factor 8.2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["world_size"], 64);
  EXPECT_EQ(j["batch_size_per_rank"], 1024);
  EXPECT_DOUBLE_EQ(j["pooling_factor"].get<double>(), 8.2);
  EXPECT_DOUBLE_EQ(j["memory_per_rank"].get<double>(), 8.0 * (1LL << 30));
  EXPECT_EQ(j["embedding_optimizer"], "adagrad");
  ASSERT_EQ(j["tables"].size(), 26u);
  ASSERT_EQ(j["ranks"].size(), 64u);
  int64_t rows_c1 = 0;
  for (const auto& s : j["tables"][0]["shards"]) rows_c1 += s["rows"].get<int64_t>();
  EXPECT_EQ(rows_c1, 40000000);
  for (const auto& rank : j["ranks"])
    EXPECT_LE(rank["parameter_bytes"].get<double>() + rank["optimizer_bytes"].get<double>(), 8.0 * (1LL << 30));
}

TEST(PlanCliTest, RefusesAPlanThatDoesNotFitWithTheNumbers) {
  auto r = run_recmod("plan " + kMlperf + " --world-size 8 --memory-per-rank 1G");
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << r.exit_code;
  EXPECT_THAT(r.output, StartsWith("recmod: "));
  EXPECT_THAT(r.output, HasSubstr("does not fit memory_per_rank"));
  EXPECT_THAT(r.output, ContainsRegex("rank [0-7] needs [0-9.]+ GiB \\([0-9]+ bytes"));
  EXPECT_THAT(r.output, HasSubstr("1.0 GiB (1073741824 bytes) is available"));
}

TEST(PlanCliTest, ConfigShardingSectionIsHonoured) {
  const auto dir = fresh_dir("plan_sharding");
  std::string yaml = tiny_model_yaml() + "sharding:\n  t1: {type: table_wise, ranks: [2]}\n  t2: row_wise\n";
  auto r = run_recmod("plan " + write_file(dir + "/model.yaml", yaml) + " --world-size 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ContainsRegex("sparse_arch.t1 +table_wise +2 "));
  EXPECT_THAT(r.output, ContainsRegex("sparse_arch.t2 +row_wise +0-2 "));
  EXPECT_THAT(r.output, HasSubstr("batch 64 per rank"));  // the config's training.batch_size

  // A rank beyond the world size is refused (exit 1, a recmod: line).
  r = run_recmod("plan " + dir + "/model.yaml --world-size 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("recmod: sharding: table 'sparse_arch.t1': rank 2 is outside [0, 2)"));

  // A sharding error in the config is a config error (exit 2) at its key.
  write_file(dir + "/bad.yaml", tiny_model_yaml() + "sharding:\n  t9: row_wise\n");
  r = run_recmod("plan " + dir + "/bad.yaml --world-size 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("bad.yaml:"));
  EXPECT_THAT(r.output, HasSubstr("sharding.t9: no embedding table 't9'"));
}

// Towers' tables (EmbeddingTower, EmbeddingTowerCollection) are planned as
// a distributed run keeps them: data_parallel, whole on every rank.
TEST(PlanCliTest, TowersTablesArePlannedReplicatedOnEveryRank) {
  const auto dir = fresh_dir("plan_towers");
  const std::string yaml = R"(features:
  dense: {count: 1}
  sparse: [a, b, c]
nodes:
  bags:
    type: EmbeddingBagCollection
    input: features.sparse
    tables: [{name: t_a, num_embeddings: 1000, embedding_dim: 8, feature_names: [a]}]
  tower:
    type: EmbeddingTower
    input: features.sparse
    embedding:
      type: EmbeddingBagCollection
      tables: [{name: t_b, num_embeddings: 500, embedding_dim: 4, feature_names: [b]}]
    interaction: {type: Linear, out_features: 1}
  towers:
    type: EmbeddingTowerCollection
    input: features.sparse
    towers:
      - embedding:
          type: EmbeddingCollection
          tables: [{name: t_c, num_embeddings: 300, embedding_dim: 2, feature_names: [c]}]
        interaction: {type: SequencePool, mode: sum}
  x: {type: Concat, inputs: [features.dense, bags, tower, towers]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
training:
  embedding_optimizer: {type: sgd, lr: 0.1}
sharding:
  t_a: {type: table_wise, ranks: [0]}
)";
  auto r = run_recmod("plan " + write_file(dir + "/model.yaml", yaml) + " --world-size 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto plan = nlohmann::json::parse(r.output);
  ASSERT_EQ(plan["tables"].size(), 3u) << plan.dump();
  EXPECT_EQ(plan["tables"][0]["table"], "t_a");
  EXPECT_EQ(plan["tables"][0]["type"], "table_wise");
  EXPECT_EQ(plan["tables"][1]["module"], "tower.embedding");
  EXPECT_EQ(plan["tables"][1]["table"], "t_b");
  EXPECT_EQ(plan["tables"][1]["type"], "data_parallel");
  EXPECT_EQ(plan["tables"][2]["module"], "towers.towers.0.embedding");
  EXPECT_EQ(plan["tables"][2]["table"], "t_c");
  EXPECT_EQ(plan["tables"][2]["type"], "data_parallel");
  // Each rank holds both tower tables whole; t_a (1000 x 8 x 4 bytes) on rank 0.
  const int64_t towers_bytes = 500 * 4 * 4 + 300 * 2 * 4;
  EXPECT_EQ(plan["ranks"][0]["parameter_bytes"].get<int64_t>(), towers_bytes + 1000 * 8 * 4);
  EXPECT_EQ(plan["ranks"][1]["parameter_bytes"].get<int64_t>(), towers_bytes);

  r = run_recmod("plan " + dir + "/model.yaml --world-size 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ContainsRegex("tower.embedding.t_b +data_parallel"));
}

TEST(PlanCliTest, BadFlagsAreUsageErrors) {
  auto r = run_recmod("plan " + kMlperf + " --world-size 8 --memory-per-rank 12Q");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("recmod: plan: --memory-per-rank expects a size"));
  r = run_recmod("plan " + kMlperf + " --world-size 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--world-size must be >= 1"));
  r = run_recmod("plan " + kMlperf);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--world-size"));
  r = run_recmod("plan " + kMlperf + " --world-size 2 --device tpu");
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace plan_cli_test
}  // namespace recmod::testing
