// BadRecordBudget: skipped bad records within --max-bad-fraction pass, more
// fail naming the count and the first messages; checked once enough records
// were seen, and always at the end of the data.
#include "recmod/data/bad_record_budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/common/errors.h"
#include "recmod/data/jsonl.h"

namespace recmod::data {
namespace bad_record_budget_test {

using ::testing::HasSubstr;

/// `good` + `bad` lines, the bad ones at lines 2, 2 + step, ... (1-based).
std::string lines(int good, int bad) {
  std::string text;
  const int step = (good + bad) / bad;
  for (int i = 0, left = bad; i < good + bad; ++i) {
    const bool is_bad = left > 0 && i % step == 1;
    left -= is_bad;
    text += is_bad ? "oops\n" : "{\"label\": 1}\n";
  }
  return text;
}

int64_t read_all(ExampleReader& reader) {
  int64_t rows = 0;
  while (auto block = reader.read(10)) rows += block->num_rows();
  return rows;
}

/// A reader over `text`, which it views (not copies): keep `text` alive.
std::unique_ptr<ExampleReader> skipping(const std::string& text) {
  return std::make_unique<JsonlReader>("d.jsonl", text, DataSchema{0, {}, 1, false}, BadRecordPolicy::kSkip);
}

TEST(BadRecordBudget, WithinTheFractionTheGoodRowsAreRead) {
  const std::string text = lines(97, 3);
  BadRecordBudget budget(skipping(text), 0.05, 50);  // 2 of the first ~50 (4%), 3 of all 100
  EXPECT_EQ(read_all(budget), 97);
  EXPECT_EQ(budget.report().rows_skipped, 3);
}

TEST(BadRecordBudget, BeyondItTheReadFailsWithCountAndFirstMessages) {
  const std::string text = lines(97, 3);
  BadRecordBudget budget(skipping(text), 0.02, 10);
  try {
    read_all(budget);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad records of"));
    EXPECT_THAT(e.what(), HasSubstr("exceed --max-bad-fraction 0.02; the first:\n  d.jsonl:2: expected a JSON object"));
  }
  // A small file is judged at its end, whatever min_records.
  const std::string two_rows = "{\"label\": 1}\noops\n";  // the reader views the text: it must outlive it
  BadRecordBudget small(skipping(two_rows), 0.1, 1000);
  EXPECT_THROW(read_all(small), InputError);
}

}  // namespace bad_record_budget_test
}  // namespace recmod::data
