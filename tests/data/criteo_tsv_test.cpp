#include "recmod/data/criteo_tsv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "recmod/common/errors.h"

namespace recmod::data {
namespace criteo_tsv_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kSample = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";

/// A row of `fields` tab-joined.
std::string row(const std::vector<std::string>& fields) {
  std::string s;
  for (size_t i = 0; i < fields.size(); ++i) s += (i ? "\t" : "") + fields[i];
  return s;
}

/// label 1, I1..I13 = 1..13, C1..C26 = 1..1a in hex.
std::vector<std::string> good_fields() {
  std::vector<std::string> f{"1"};
  for (int i = 1; i <= 13; ++i) f.push_back(std::to_string(i));
  for (int k = 1; k <= 26; ++k) {
    std::ostringstream os;
    os << std::hex << k;
    f.push_back(os.str());
  }
  return f;
}

ExampleColumns read_all(ExampleReader& reader, int64_t chunk = 128) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(chunk)) all.append(*block);
  return all;
}

std::string error_of(const std::string& text) {
  CriteoTsvReader reader("t.tsv", text);
  try {
    read_all(reader);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(CriteoTsv, RealSampleCountsAndTrimmedRows) {
  CriteoTsvReader reader(kSample);
  const auto all = read_all(reader, 300);
  ASSERT_EQ(all.num_rows(), 1000);
  EXPECT_EQ(std::count(all.labels.begin(), all.labels.end(), 1.0f), 205);
  EXPECT_EQ(reader.report().rows_read, 1000);
  EXPECT_EQ(reader.report().rows_skipped, 0);

  // Count fields per line independently of the reader: trimmed rows must
  // come out with empty bags for the trimmed categoricals.
  std::ifstream in(kSample);
  std::string line;
  std::map<int, int> rows_by_fields;
  for (int64_t r = 0; std::getline(in, line); ++r) {
    const int fields = 1 + static_cast<int>(std::count(line.begin(), line.end(), '\t'));
    ++rows_by_fields[fields];
    for (int k = fields - 14; k < 26; ++k) EXPECT_EQ(all.sparse[k].length(r), 0) << "row " << r << " C" << k + 1;
  }
  EXPECT_EQ(rows_by_fields[40], 502);
  EXPECT_EQ(rows_by_fields[38], 469);
  EXPECT_EQ(rows_by_fields[37], 29);
}

TEST(CriteoTsv, FirstRealRowValues) {
  // 0  1 1 5 0 1382 4 15 2 181 1 2 _ 2  68fd1e64 80e26c9b ... C22 empty ... 9727dd16
  CriteoTsvReader reader(kSample);
  const auto first = *reader.read(1);
  ASSERT_EQ(first.num_rows(), 1);
  EXPECT_EQ(first.labels[0], 0.0f);
  EXPECT_FLOAT_EQ(first.dense[0], std::log(2.0f));
  EXPECT_FLOAT_EQ(first.dense[4], static_cast<float>(std::log1p(1382.0)));
  EXPECT_EQ(first.dense[11], 0.0f);  // I12 is missing
  EXPECT_THAT(first.sparse[0].ids, ElementsAre(0x68fd1e64));
  EXPECT_THAT(first.sparse[1].ids, ElementsAre(0x80e26c9b));  // above 2^31: stays positive
  EXPECT_EQ(first.sparse[21].length(0), 0);                  // C22 is missing
  EXPECT_THAT(first.sparse[25].ids, ElementsAre(0x9727dd16));
}

TEST(CriteoTsv, BatchHasCriteoLayout) {
  CriteoTsvReader reader(kSample);
  const auto batch = reader.read(64)->to_batch();
  EXPECT_EQ(batch.dense.sizes(), (std::vector<int64_t>{64, 13}));
  EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{64, 1}));
  EXPECT_EQ(batch.sparse.keys().front(), "C1");
  EXPECT_EQ(batch.sparse.keys().back(), "C26");
  EXPECT_EQ(batch.sparse.stride(), 64);
  EXPECT_EQ(batch.sparse.lengths().numel(), 26 * 64);
}

TEST(CriteoTsv, NegativeAndMissingIntegersBecomeZero) {
  auto f = good_fields();
  f[1] = "-1";
  f[2] = "";
  f[3] = "0";
  const std::string text = row(f) + "\n";  // the reader does not copy its text
  CriteoTsvReader reader("t.tsv", text);
  const auto rows = *reader.read(10);
  EXPECT_EQ(rows.dense[0], 0.0f);
  EXPECT_EQ(rows.dense[1], 0.0f);
  EXPECT_EQ(rows.dense[2], 0.0f);
  EXPECT_FLOAT_EQ(rows.dense[3], std::log(5.0f));  // I4 = 4
}

TEST(CriteoTsv, CrlfAndMissingFinalNewline) {
  const std::string text = row(good_fields()) + "\r\n" + row(good_fields());
  CriteoTsvReader reader("t.tsv", text);
  const auto rows = read_all(reader);
  EXPECT_EQ(rows.num_rows(), 2);
  EXPECT_THAT(rows.sparse[25].ids, ElementsAre(26, 26));
}

TEST(CriteoTsv, WrongFieldCountMessage) {
  auto f = good_fields();
  f.push_back("ff");
  EXPECT_EQ(error_of(row(good_fields()) + "\n" + row(f) + "\n"),
            "t.tsv:2: expected 40 tab-separated fields (at least 14 when trailing empty fields are trimmed), "
            "found 41");
  EXPECT_THAT(error_of("1\t2\t3\n"), HasSubstr("t.tsv:1: expected 40 tab-separated fields"));
  EXPECT_THAT(error_of("1\t2\t3\n"), HasSubstr("found 3"));
}

TEST(CriteoTsv, NonIntegerMessage) {
  auto f = good_fields();
  f[3] = "1.5";
  EXPECT_EQ(error_of(row(f)), "t.tsv:1: expected an integer for I3, found '1.5'");
}

TEST(CriteoTsv, NonHexMessage) {
  auto f = good_fields();
  f[15] = "xyz";
  EXPECT_EQ(error_of(row(f)), "t.tsv:1: expected a 32-bit hex id for C2, found 'xyz'");
  f[15] = "123456789";  // 9 hex digits do not fit 32 bits
  EXPECT_EQ(error_of(row(f)), "t.tsv:1: expected a 32-bit hex id for C2, found '123456789'");
}

TEST(CriteoTsv, BadLabelMessage) {
  auto f = good_fields();
  f[0] = "2";
  EXPECT_EQ(error_of(row(f)), "t.tsv:1: expected label 0 or 1, found '2'");
}

TEST(CriteoTsv, SkipPolicyCountsAndReports) {
  auto bad_label = good_fields();
  bad_label[0] = "x";
  auto bad_int = good_fields();
  bad_int[13] = "abc";
  const std::string text = row(good_fields()) + "\n" + row(bad_label) + "\n" + row(good_fields()) + "\n" +
                           row(bad_int) + "\n" + row(good_fields()) + "\n";
  CriteoTsvReader reader("t.tsv", text, BadRecordPolicy::kSkip);
  const auto rows = read_all(reader, 2);
  EXPECT_EQ(rows.num_rows(), 3);
  EXPECT_THAT(rows.sparse[0].offsets, ElementsAre(0, 1, 2, 3));  // no residue of the bad rows
  const auto report = reader.report();
  EXPECT_EQ(report.rows_read, 3);
  EXPECT_EQ(report.rows_skipped, 2);
  EXPECT_THAT(report.first_errors,
              ElementsAre("t.tsv:2: expected label 0 or 1, found 'x'", "t.tsv:4: expected an integer for I13, found 'abc'"));
  EXPECT_EQ(report.summary(), "3 rows read, 2 bad records skipped (first: t.tsv:2: expected label 0 or 1, found 'x')");
}

TEST(CriteoTsv, MissingFileMessage) {
  try {
    CriteoTsvReader reader("/nonexistent/train.tsv");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/train.tsv: cannot open: No such file"));
  }
  try {
    CriteoTsvReader reader(::testing::TempDir());
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), ::testing::TempDir() + ": cannot open: not a regular file");
  }
}

}  // namespace criteo_tsv_test
}  // namespace recmod::data
