#include "recmod/data/jsonl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "recmod/common/errors.h"
#include "recmod/data/open_reader.h"

namespace recmod::data {
namespace jsonl_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

DataSchema schema(bool weighted = false) { return DataSchema{2, {"f1", "f2"}, 1, weighted}; }

std::string error_of(const std::string& text, DataSchema s = schema()) {
  JsonlReader reader("d.jsonl", text, std::move(s));
  try {
    while (reader.read(16)) {
    }
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(Jsonl, ParsesListsObjectsAndMissingFeatures) {
  const std::string text =
      R"({"label": 1, "dense": [0.5, 2], "sparse": {"f1": [3, 7], "f2": {"ids": [4]}}})"
      "\n\n"
      R"({"label": [0], "dense": [1, -1], "sparse": {"f2": [5, 6, 7]}})"
      "\n";
  JsonlReader reader("d.jsonl", text, schema());
  const auto rows = *reader.read(10);
  ASSERT_EQ(rows.num_rows(), 2);
  EXPECT_THAT(rows.labels, ElementsAre(1, 0));
  EXPECT_THAT(rows.dense, ElementsAre(0.5f, 2, 1, -1));
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(3, 7));
  EXPECT_THAT(rows.sparse[0].offsets, ElementsAre(0, 2, 2));  // f1 missing in row 2: empty bag
  EXPECT_THAT(rows.sparse[1].ids, ElementsAre(4, 5, 6, 7));
  EXPECT_THAT(rows.sparse[1].offsets, ElementsAre(0, 1, 4));
  EXPECT_FALSE(reader.read(10).has_value());
}

TEST(Jsonl, WeightedDefaultsToOne) {
  const std::string text = R"({"label": 0, "dense": [0, 0], "sparse": {"f1": {"ids": [1, 2], "weights": [0.5, 2]}, "f2": [9]}})";
  JsonlReader reader("d.jsonl", text, schema(true));
  const auto rows = *reader.read(10);
  EXPECT_THAT(rows.sparse[0].weights, ElementsAre(0.5f, 2.0f));
  EXPECT_THAT(rows.sparse[1].weights, ElementsAre(1.0f));
  const auto batch = rows.to_batch();
  EXPECT_TRUE(batch.sparse.has_weights());
}

TEST(Jsonl, ErrorMessagesNameFileAndLine) {
  const std::string good = R"({"label": 1, "dense": [0, 0]})";
  EXPECT_EQ(error_of(good + "\n" + R"({"label": 1, "dense": [0]})"),
            "d.jsonl:2: expected \"dense\" to be a list of 2 numbers, found [0]");
  EXPECT_EQ(error_of(R"({"dense": [0, 0]})"), "d.jsonl:1: expected a \"label\", found none");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "sparse": {"f1": [1.5]}})"),
            "d.jsonl:1: expected integer ids for \"f1\", found 1.5");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "sparse": {"f1": {"ids": [1], "weights": [1]}}})"),
            "d.jsonl:1: expected no weights for \"f1\" (the schema is unweighted), found {\"ids\":[1],\"weights\":[1]}");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "sparse": {"f1": {"ids": [1, 2], "weights": [1]}}})", schema(true)),
            "d.jsonl:1: expected \"weights\" of \"f1\" to be a list of 2 numbers (one per id), found [1]");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "extra": 1})"),
            "d.jsonl:1: expected keys \"label\", \"dense\", \"sparse\", found \"extra\"");
  EXPECT_EQ(error_of("[1, 2]"), "d.jsonl:1: expected a JSON object, found [1,2]");
  EXPECT_THAT(error_of(R"({"label": 1,)"), HasSubstr("d.jsonl:1: expected a JSON object, found invalid JSON (parse error"));
}

TEST(Jsonl, SkipPolicyKeepsGoodRows) {
  const std::string text = R"({"label": 1, "dense": [0, 0]})"
                           "\nnot json\n"
                           R"({"label": 0, "dense": [1, 1], "sparse": {"f1": [2]}})";
  JsonlReader reader("d.jsonl", text, schema(), BadRecordPolicy::kSkip);
  const auto rows = *reader.read(10);
  EXPECT_EQ(rows.num_rows(), 2);
  EXPECT_THAT(rows.sparse[0].offsets, ElementsAre(0, 0, 1));
  EXPECT_EQ(reader.report().rows_skipped, 1);
  EXPECT_THAT(reader.report().first_errors[0], HasSubstr("d.jsonl:2: expected a JSON object"));
}

TEST(Jsonl, WriteThenReadRoundTrip) {
  DataSchema s{2, {"f1", "f2"}, 2, true};
  ExampleColumns data(s);
  data.labels = {1, 0.25f, 0, 1};
  data.dense = {0.1f, -3.5e-7f, 123456.78f, 0};
  data.sparse[0].ids = {1, -2, 9007199254740993};
  data.sparse[0].weights = {0.3f, 1, 2};
  data.sparse[0].offsets = {0, 3, 3};
  data.sparse[1].ids = {5};
  data.sparse[1].weights = {0.1f};
  data.sparse[1].offsets = {0, 0, 1};
  data.finish_row();
  data.finish_row();
  const std::string path = ::testing::TempDir() + "recmod_jsonl_" + std::to_string(::getpid()) + ".jsonl";
  write_jsonl(path, data);

  EXPECT_EQ(detect_format(path), DataFormat::kJsonl);
  auto reader = open_reader(path, DataFormat::kAuto, s);
  const auto back = *reader->read(10);
  EXPECT_EQ(back.labels, data.labels);
  EXPECT_EQ(back.dense, data.dense);  // shortest round-trip text keeps floats exact
  for (int f = 0; f < 2; ++f) {
    EXPECT_EQ(back.sparse[f].ids, data.sparse[f].ids);
    EXPECT_EQ(back.sparse[f].offsets, data.sparse[f].offsets);
    EXPECT_EQ(back.sparse[f].weights, data.sparse[f].weights);
  }
  std::remove(path.c_str());
}

TEST(Jsonl, OpenReaderNeedsSchema) {
  const std::string path = ::testing::TempDir() + "recmod_jsonl_noschema_" + std::to_string(::getpid()) + ".jsonl";
  write_jsonl(path, ExampleColumns(schema()));
  try {
    open_reader(path, DataFormat::kJsonl);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("JSON lines need a schema"));
  }
  std::remove(path.c_str());
}

// Issue 18: nlohmann kept the last of two equal keys; other readers keep the first.
TEST(Jsonl, DuplicateKeyIsABadRecord) {
  const std::string good = R"({"label": 1, "dense": [0, 0]})";
  EXPECT_EQ(error_of(good + "\n" + R"({"label": 1, "dense": [0, 0], "label": 0})"),
            "d.jsonl:2: expected each key once in an object, found \"label\" twice");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "sparse": {"f1": [1], "f2": [], "f1": [2]}})"),
            "d.jsonl:1: expected each key once in an object, found \"f1\" twice");
  EXPECT_EQ(error_of(R"({"label": 1, "dense": [0, 0], "sparse": {"f1": {"ids": [1], "ids": [2]}}})", schema(true)),
            "d.jsonl:1: expected each key once in an object, found \"ids\" twice");
  // A hostile object with many keys stays linear; its duplicate is still found.
  std::string many = R"({"label": 1, "dense": [0, 0], "sparse": {)";
  for (int i = 0; i < 20000; ++i) many += "\"k" + std::to_string(i) + "\": [], ";
  many += R"("k7": []}})";
  EXPECT_EQ(error_of(many), "d.jsonl:1: expected each key once in an object, found \"k7\" twice");
  // The same key in sibling objects is fine.
  JsonlReader reader("d.jsonl", R"({"label": 1, "dense": [0, 0], "sparse": {"f1": {"ids": [1]}, "f2": {"ids": [2]}}})",
                     schema());
  EXPECT_TRUE(reader.read(16).has_value());
}

}  // namespace jsonl_test
}  // namespace recmod::data
