// recmod train --resume with a changed config (issue 14): refused naming
// the changed keys unless docs/cli.md allows them; the run keeps each version.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace resume_config_cli_test {

using ::testing::HasSubstr;
using ::testing::Not;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ResumeConfigCli, ChangedModelIsRefusedMoreEpochsAreKeptAsAVersion) {
  const auto dir = fresh_dir("resume_config");
  const std::string data = dir + "/train.rmb";
  write_synthetic(data, "--rows 640 --dense 2 --sparse 3 --cardinality 50 --seed 2");
  const std::string yaml = tiny_model_yaml("{type: adam, lr: 0.01}", 1);
  const auto config = write_file(dir + "/one.yaml", yaml);
  const std::string run = dir + "/run";
  const std::string train = "train --data " + data + " --threads 1 --out " + run + " ";
  auto r = run_recmod(train + config);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_text(run + "/config.yaml"), yaml);
  EXPECT_THAT(r.output, HasSubstr("steps 10,"));

  // Another optimizer rate and another table size: refused before any step, nothing written.
  std::string changed = yaml;
  changed.replace(changed.find("lr: 0.01"), 8, "lr: 0.05");
  changed.replace(changed.find("num_embeddings: 50, embedding_dim: 4, feature_names: [C2]"), 18, "num_embeddings: 60");
  const auto bad = write_file(dir + "/bad.yaml", changed);
  const std::string model_before = read_text(run + "/model.pt");
  r = run_recmod(train + bad + " --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recmod: " + run + ": --resume with a changed config: "
                                  "nodes.sparse_arch.tables[1].num_embeddings (50 -> 60), "
                                  "training.dense_optimizer.lr (0.01 -> 0.05) differ from " + run + "/config.yaml"));
  EXPECT_THAT(r.output, HasSubstr("(docs/cli.md)"));
  EXPECT_TRUE(read_text(run + "/model.pt") == model_before);
  EXPECT_FALSE(std::filesystem::exists(run + "/config.1.yaml"));
  // The same through --set.
  r = run_recmod(train + config + " --resume --set training.batch_size=32");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("training.batch_size (64 -> 32) differ from"));
  EXPECT_THAT(r.output, HasSubstr("global batch (64 examples; this start's is 32)"));

  // More epochs and another logging interval: allowed, kept as config.1.yaml, trained on.
  std::string more = yaml;
  more.replace(more.find("epochs: 1"), 9, "epochs: 2");
  const auto longer = write_file(dir + "/longer.yaml", more);
  r = run_recmod(train + longer + " --resume --set training.log_interval=5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming with a changed config: training.epochs (1 -> 2), "
                                  "training.log_interval (10 -> 5); kept as " + run + "/config.1.yaml"));
  EXPECT_THAT(r.output, HasSubstr("steps 20,"));
  EXPECT_EQ(read_text(run + "/config.yaml"), yaml) << "the first version stays";
  const std::string version1 = read_text(run + "/config.1.yaml");
  EXPECT_THAT(version1, HasSubstr("epochs: 2"));
  EXPECT_THAT(version1, HasSubstr("log_interval: 5"));
  // Resuming with the latest version changes nothing and writes no version.
  r = run_recmod(train + longer + " --resume --set training.log_interval=5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("changed config")));
  EXPECT_FALSE(std::filesystem::exists(run + "/config.2.yaml"));
}

}  // namespace resume_config_cli_test
}  // namespace recmod::testing
