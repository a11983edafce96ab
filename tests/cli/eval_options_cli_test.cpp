// recmod eval --bad-records / --max-bad-fraction / --format and recmod train
// --eval-format (issue 13): evaluation data read with its own format and its
// own bad-record policy.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace eval_options_cli_test {

using ::testing::HasSubstr;

TEST(EvalOptionsCliTest, BadRecordsSkipAndEvalFormat) {
  const auto dir = fresh_dir("eval_options");
  write_synthetic(dir + "/t.rmb", "--rows 400 --dense 2 --sparse 3 --cardinality 50 --seed 9");
  write_synthetic(dir + "/e.jsonl", "--rows 200 --dense 2 --sparse 3 --cardinality 50 --seed 10 --format jsonl");
  const std::string config = write_file(dir + "/m.yaml", tiny_model_yaml());
  // --format binary is for the training data; the JSON lines evaluation set has its own.
  auto t = run_recmod("train " + config + " --data " + dir + "/t.rmb --format binary --eval-data " + dir +
                      "/e.jsonl --eval-format jsonl --out " + dir + "/run --steps 6 --threads 1");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_THAT(t.output, HasSubstr("eval {"));
  auto same = run_recmod("train " + config + " --data " + dir + "/t.rmb --format binary --eval-data " + dir +
                         "/e.jsonl --out " + dir + "/run2 --steps 6 --threads 1");
  EXPECT_EQ(same.exit_code, 1);  // without it the JSON lines are asked to be .rmb
  EXPECT_THAT(same.output, HasSubstr("e.jsonl"));

  // One bad line among 201: eval fails on it by default, skips it when asked.
  std::ifstream in(dir + "/e.jsonl");
  std::ofstream out(dir + "/bad.jsonl");
  std::string line;
  for (int i = 0; std::getline(in, line); ++i) {
    out << line << "\n";
    if (i == 99) out << "{\"label\": 7}\n";
  }
  out.close();
  const std::string eval = "eval " + config + " --checkpoint " + dir + "/run/model.pt --threads 1 --json --data " + dir +
                           "/bad.jsonl";
  auto fail = run_recmod(eval);
  EXPECT_EQ(fail.exit_code, 1);
  EXPECT_THAT(fail.output, HasSubstr("bad.jsonl:101: expected \"label\" 0 or 1"));
  auto skip = run_recmod(eval + " --bad-records skip");
  ASSERT_EQ(skip.exit_code, 0) << skip.output;
  EXPECT_THAT(skip.output, HasSubstr("1 bad record skipped"));
  EXPECT_THAT(skip.output, HasSubstr("\"count\":200"));
  auto strict = run_recmod(eval + " --bad-records skip --max-bad-fraction 0.001");
  EXPECT_EQ(strict.exit_code, 1) << strict.output;
}

}  // namespace eval_options_cli_test
}  // namespace recmod::testing
