// TorchRec's Criteo .npy files end to end: recmod convert --to npy writes a
// day's three files, and train / eval read them by their prefix.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace criteo_npy_cli_test {

using ::testing::HasSubstr;

TEST(CriteoNpyCliTest, ConvertToNpyThenTrainAndEvaluateOnThePrefix) {
  const auto dir = fresh_dir("criteo_npy");
  write_synthetic(dir + "/d.rmb", "--rows 800 --dense 2 --sparse 3 --cardinality 50 --max-ids 1 --seed 7");
  auto c = run_recmod("convert " + dir + "/d.rmb " + dir + "/day_0 --to npy");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_THAT(c.output, HasSubstr("800 rows read"));
  const std::string config = write_file(dir + "/m.yaml", tiny_model_yaml());
  auto t = run_recmod("train " + config + " --data " + dir + "/day_0 --eval-data " + dir +
                      "/day_0_labels.npy --out " + dir + "/run --steps 10 --threads 1");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  // The same rows from the .rmb and from the .npy files give the same metrics.
  const std::string eval = "eval " + config + " --checkpoint " + dir + "/run/model.pt --json --threads 1 --data ";
  auto from_npy = run_recmod(eval + dir + "/day_0");
  auto from_rmb = run_recmod(eval + dir + "/d.rmb");
  ASSERT_EQ(from_npy.exit_code, 0) << from_npy.output;
  ASSERT_EQ(from_rmb.exit_code, 0) << from_rmb.output;
  EXPECT_EQ(from_npy.output.substr(from_npy.output.find('{')), from_rmb.output.substr(from_rmb.output.find('{')));
  // Generated bags of several ids do not fit the format: refused with the row.
  write_synthetic(dir + "/m.rmb", "--rows 50 --dense 2 --sparse 3 --max-ids 4 --seed 7");
  auto refused = run_recmod("convert " + dir + "/m.rmb " + dir + "/day_1 --to npy");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("TorchRec's Criteo .npy holds exactly one per feature"));
}

}  // namespace criteo_npy_cli_test
}  // namespace recmod::testing
