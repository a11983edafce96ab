// recmod profile and recmod evict end to end on tiny configs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace profile_evict_cli_test {

using ::testing::HasSubstr;
using ::testing::Not;

const char* kMcModel = R"(features:
  dense: {count: 13}
  sparse: [C1, C2]
  hash: murmur
  range: 100000
nodes:
  sparse_arch:
    type: ManagedCollisionEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 16, embedding_dim: 4, feature_names: [C1], managed_collision: {eviction: lfu, eviction_interval: 1}}
      - {name: t2, num_embeddings: 16, embedding_dim: 4, feature_names: [C2], managed_collision: {eviction: lru, eviction_interval: 1}}
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training: {batch_size: 100}
data: {format: criteo_tsv}
)";

const std::string kCriteo = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";

TEST(EvictCliTest, FillsTablesEvictsAndWritesTheCheckpoint) {
  auto dir = fresh_dir("evict");
  auto config = write_file(dir + "/mc.yaml", kMcModel);
  ASSERT_EQ(
      run_recmod("train " + config + " --data " + kCriteo + " --out " + dir + "/run --steps 2 --threads 1").exit_code,
      0);
  auto r = run_recmod("evict " + config + " --checkpoint " + dir + "/run/model.pt --data " + kCriteo + " --out " + dir +
                      "/evicted.pt --json --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto report = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  ASSERT_EQ(report["tables"].size(), 2u);
  for (const auto& t : report["tables"]) {
    EXPECT_EQ(t["ids_seen"].get<int64_t>(), 1000) << t.dump();  // C1 and C2 have an id in every row
    EXPECT_GT(t["distinct_ids"].get<int64_t>(), 16) << t.dump();
    // 16 slots, the last being the overflow row: 15 ids fit.
    EXPECT_EQ(t["slots_used"].get<int64_t>(), 15) << t.dump();
    EXPECT_GT(t["evicted"].get<int64_t>(), 0) << t.dump();
    EXPECT_GT(t["hit_rate"].get<double>(), 0.0);
    EXPECT_LT(t["hit_rate"].get<double>(), 1.0);
  }
  EXPECT_TRUE(std::ifstream(dir + "/evicted.pt").good());
  // The updated checkpoint loads into the same config.
  EXPECT_EQ(run_recmod("eval " + config + " --checkpoint " + dir + "/evicted.pt --data " + kCriteo).exit_code, 0);
}

TEST(EvictCliTest, ConfigWithoutManagedTablesIsAUsageError) {
  auto dir = fresh_dir("evict_none");
  auto config = write_file(
      dir + "/m.yaml",
      "features: {dense: 13}\nnodes:\n  a: {type: Linear, input: features.dense, out_features: 1}\noutput: a\n");
  ASSERT_EQ(
      run_recmod("train " + config + " --data " + kCriteo + " --format criteo_tsv --out " + dir + "/run --steps 1")
          .exit_code,
      0);
  auto r = run_recmod("evict " + config + " --checkpoint " + dir + "/run/model.pt --data " + kCriteo);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("has no ManagedCollisionEmbeddingBagCollection node"));
}

TEST(ProfileCliTest, ReportsEveryNodeMemoryAndATrace) {
  auto dir = fresh_dir("profile");
  auto config = write_file(dir + "/mc.yaml", kMcModel);
  auto r = run_recmod("profile " + config + " --synthetic --steps 2 --warmup 1 --trace " + dir + "/trace.json --json " +
                      dir + "/report.json --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("examples/s"));
  EXPECT_THAT(r.output, HasSubstr("peak RSS"));
  nlohmann::json report;
  std::ifstream(dir + "/report.json") >> report;
  ASSERT_EQ(report["nodes"].size(), 3u);
  EXPECT_EQ(report["nodes"][0]["name"], "sparse_arch");
  // Two 16 x 4 float tables plus Linear(13 + 8, 1).
  EXPECT_EQ(report["total_parameter_bytes"].get<int64_t>(), (2 * 16 * 4 + 21 + 1) * 4);
  EXPECT_GT(report["peak_rss_bytes"].get<int64_t>(), 0);
  nlohmann::json trace;
  std::ifstream(dir + "/trace.json") >> trace;
  // Per timed step: 3 forward + 3 backward events and the step.
  EXPECT_EQ(trace["traceEvents"].size(), 2u * 7u);
}

TEST(ProfileCliTest, NeedsDataOrSynthetic) {
  auto dir = fresh_dir("profile_usage");
  auto config = write_file(dir + "/mc.yaml", kMcModel);
  auto r = run_recmod("profile " + config);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("recmod: give exactly one of --data FILE and --synthetic"));
}

TEST(ProfileCliTest, ShortensOpenBlasSpinForLargeBatchesOnTwoThreads) {
  auto dir = fresh_dir("profile_blas_spin");
  auto config = write_file(dir + "/mc.yaml", kMcModel);
  const std::string profile = " profile " + config + " --synthetic --steps 1 --warmup 1 --threads 2 --batch-size ";
  auto large = run_command(std::string(RECMOD_BIN) + profile + "1024 2>&1");
  ASSERT_EQ(large.exit_code, 0) << large.output;
  if (large.output.find("OpenBLAS's workers") == std::string::npos) GTEST_SKIP() << "libtorch's BLAS is not OpenBLAS";
  EXPECT_THAT(large.output,
              HasSubstr("OpenBLAS's workers spin 2^20 cycles after a GEMM (short: 1024 rows per rank on 2 threads)"));
  auto small = run_command("GOMP_SPINCOUNT=20000 " + std::string(RECMOD_BIN) + profile + "128 2>&1");
  ASSERT_EQ(small.exit_code, 0) << small.output;
  EXPECT_THAT(small.output,
              HasSubstr("spin 2^28 cycles after a GEMM (OpenBLAS's default; 128 rows per rank on 2 threads)"));
  auto users = run_command("OPENBLAS_THREAD_TIMEOUT=24 " + std::string(RECMOD_BIN) + profile + "1024 2>&1");
  ASSERT_EQ(users.exit_code, 0) << users.output;
  EXPECT_THAT(users.output, HasSubstr("spin 2^24 cycles after a GEMM (OPENBLAS_THREAD_TIMEOUT=24)"));
}

/// Under passive waiting (recmod's default) a step of fewer than 128 rows a
/// thread runs on fewer threads, and says so; 256 rows keep both; threads
/// that spin (GOMP_SPINCOUNT, an active policy) are left alone.
TEST(ProfileCliTest, SmallStepsRunOnFewerThreadsUnderPassiveWaiting) {
  auto dir = fresh_dir("profile_small_steps");
  auto config = write_file(dir + "/mc.yaml", kMcModel);
  auto profile = [&](const std::string& env, int batch) {
    auto r =
        run_command(env + " " + RECMOD_BIN + " profile " + config +
                    " --synthetic --steps 1 --warmup 1 --threads 2 --batch-size " + std::to_string(batch) + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  };
  const std::string lowered = "steps of 128 rows run on 1 thread of 2 (fewer than 128 rows a thread";
  EXPECT_THAT(profile("OMP_WAIT_POLICY=PASSIVE", 128), HasSubstr(lowered));
  EXPECT_THAT(profile("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT", 128), HasSubstr(lowered));  // the default
  EXPECT_THAT(profile("OMP_WAIT_POLICY=PASSIVE", 256), Not(HasSubstr("rows run on")));
  EXPECT_THAT(profile("OMP_WAIT_POLICY=ACTIVE", 128), Not(HasSubstr("rows run on")));
  EXPECT_THAT(profile("OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=20000", 128), Not(HasSubstr("rows run on")));
}

}  // namespace profile_evict_cli_test
}  // namespace recmod::testing
