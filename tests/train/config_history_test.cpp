// What --resume may change in a run's config, and the versions kept (issue 14).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/train/config_history.h"
#include "support/test_util.h"

namespace recmod::train {
namespace config_history_test {

using ::testing::HasSubstr;

const std::string kConfig = R"(# a comment
features: {dense: {count: 2}, sparse: [C1]}
nodes:
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [8, 4]}
output: dense_arch
training:
  dense_optimizer: {type: adam, lr: 0.01}
  batch_size: 64
  epochs: 1
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ConfigHistory, ChangesAreKeyPathsWithBothValues) {
  EXPECT_TRUE(config_changes(kConfig, kConfig).empty());
  // layout, comments, key order and number spelling do not count
  const std::string same = "output: dense_arch\ntraining: {epochs: 1, batch_size: 64, dense_optimizer: {lr: 1e-2, type: adam}}\n"
                           "features: {dense: {count: 2}, sparse: [C1]}\n"
                           "nodes: {dense_arch: {type: MLP, input: features.dense, layer_sizes: [8, 4.0]}}\n";
  EXPECT_TRUE(config_changes(kConfig, same).empty()) << describe_changes(config_changes(kConfig, same));
  std::string changed = replaced(kConfig, "lr: 0.01", "lr: 0.02");
  changed = replaced(changed, "[8, 4]", "[8, 5]");
  changed = replaced(changed, "epochs: 1\n", "epochs: 1\n  steps: 30\n");
  const auto changes = config_changes(kConfig, changed);
  EXPECT_EQ(describe_changes(changes),
            "nodes.dense_arch.layer_sizes[1] (4 -> 5), training.dense_optimizer.lr (0.01 -> 0.02), "
            "training.steps (absent -> 30)");
  EXPECT_EQ(describe_changes(config_changes(kConfig, replaced(kConfig, "[8, 4]", "[8, 4, 2]"))),
            "nodes.dense_arch.layer_sizes ([8, 4] -> [8, 4, 2])");
}

struct RunFixture {
  std::string dir;
  RunDir run;
};

RunFixture started(const std::string& name) {
  const std::string dir = std::string(RECMOD_BINARY_DIR) + "/cli_test_tmp/" + name;
  test::remove_tree(dir);
  RunFixture f{dir, RunDir(dir, false)};
  start_config_history(f.run, kConfig, 64);
  return f;
}

TEST(ConfigHistory, ResumeRefusesAModelOrOptimizerChangeNamingEveryKey) {
  auto f = started("config_history_refused");
  std::string changed = replaced(kConfig, "lr: 0.01", "lr: 0.02");
  changed = replaced(changed, "[8, 4]", "[8, 5]");
  changed = replaced(changed, "epochs: 1", "epochs: 3");  // allowed, not named
  try {
    check_resume_config(f.run, changed, 64);
    FAIL() << "a changed learning rate and layer were accepted";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr(f.dir + ": --resume with a changed config: nodes.dense_arch.layer_sizes[1] (4 -> 5), "
                               "training.dense_optimizer.lr (0.01 -> 0.02) differ from " + f.dir + "/config.yaml"));
    EXPECT_THAT(msg, HasSubstr("A resumed run may change only training.epochs, training.steps"));
    EXPECT_THAT(msg, HasSubstr("--init-from " + f.dir + "/model.pt"));
    EXPECT_THAT(msg, ::testing::Not(HasSubstr("training.epochs (")));
  }
  EXPECT_EQ(config_versions(f.run), std::vector<std::string>{f.dir + "/config.yaml"});
}

TEST(ConfigHistory, AllowedChangesAreKeptAsNewVersions) {
  auto f = started("config_history_versions");
  EXPECT_TRUE(check_resume_config(f.run, kConfig, 64).empty());
  EXPECT_EQ(config_versions(f.run).size(), 1u) << "the same config writes no version";
  const std::string more = replaced(kConfig, "epochs: 1", "epochs: 3\n  eval_interval: 20");
  EXPECT_EQ(describe_changes(check_resume_config(f.run, more, 64)),
            "training.epochs (1 -> 3), training.eval_interval (absent -> 20)");
  const std::string with_eval = more + "data: {eval: eval.rmb}\nsharding: {tables: {t1: row_wise}}\n";
  EXPECT_EQ(check_resume_config(f.run, with_eval, 64).size(), 2u);
  EXPECT_EQ(config_versions(f.run),
            (std::vector<std::string>{f.dir + "/config.yaml", f.dir + "/config.1.yaml", f.dir + "/config.2.yaml"}));
  EXPECT_EQ(read(f.dir + "/config.yaml"), kConfig);
  EXPECT_EQ(read(f.dir + "/config.1.yaml"), more);
  EXPECT_EQ(read(f.dir + "/config.2.yaml"), with_eval);
  // compared with the latest version: going back to epochs 1 is a change again
  EXPECT_EQ(check_resume_config(f.run, with_eval, 64).size(), 0u);
}

TEST(ConfigHistory, BatchSizeMayChangeOnlyWithTheRanksKeepingTheGlobalBatch) {
  auto f = started("config_history_batch");
  const std::string half = replaced(kConfig, "batch_size: 64", "batch_size: 32");
  EXPECT_EQ(check_resume_config(f.run, half, 64).size(), 1u);  // 2 ranks x 32
  const std::string other = replaced(kConfig, "batch_size: 64", "batch_size: 48");
  try {
    check_resume_config(f.run, other, 48);
    FAIL() << "a new global batch was accepted";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("training.batch_size (32 -> 48) differ from " + f.dir + "/config.1.yaml; "
                                    "training.batch_size may change only with the number of ranks, keeping the "
                                    "global batch (64 examples; this start's is 48)"));
  }
}

TEST(ConfigHistory, ANewRunDropsVersionsLeftInItsDirectory) {
  auto f = started("config_history_new");
  check_resume_config(f.run, replaced(kConfig, "epochs: 1", "epochs: 2"), 64);
  ASSERT_EQ(config_versions(f.run).size(), 2u);
  start_config_history(f.run, kConfig, 64);
  EXPECT_EQ(config_versions(f.run).size(), 1u);
}

}  // namespace config_history_test
}  // namespace recmod::train
