#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace compare_cli_test {

using ::testing::HasSubstr;

TEST(CompareCliTest, EqualWithinToleranceIsExit0) {
  auto dir = fresh_dir("compare_equal");
  auto a = write_file(dir + "/a.txt", "0.25\n0.5\n0.75\n");
  auto b = write_file(dir + "/b.txt", "0.25\n0.5000001\n0.75\n");
  auto r = run_recmod("compare " + a + " " + b + " --rtol 1e-5 --atol 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("3 predictions agree"));
}

TEST(CompareCliTest, ChangedPredictionNamesTheLine) {
  auto dir = fresh_dir("compare_changed");
  auto a = write_file(dir + "/a.txt", "0.25\n0.5\n0.75\n");
  auto b = write_file(dir + "/b.txt", "0.25\n0.5\n0.76\n");
  auto r = run_recmod("compare " + a + " " + b + " --rtol 1e-5 --atol 1e-7");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("recmod: first difference at line 3: 0.75 vs 0.76"));
}

TEST(CompareCliTest, DifferentCountsAndBadNumbers) {
  auto dir = fresh_dir("compare_counts");
  auto a = write_file(dir + "/a.txt", "0.25\n0.5\n");
  auto b = write_file(dir + "/b.txt", "0.25\n");
  EXPECT_THAT(run_recmod("compare " + a + " " + b).output, HasSubstr("has 2 predictions"));
  auto c = write_file(dir + "/c.txt", "0.25\nabc\n");
  auto r = run_recmod("compare " + c + " " + a);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("c.txt:2: expected a number, found 'abc'"));
}

}  // namespace compare_cli_test
}  // namespace recmod::testing
