// JSON lines as a model reads them (JsonlOptions, filled from the config by
// train::open_batches): extra features ignored unless strict, weights only
// for features declared weighted, string ids hashed with XXH3 like delimited
// text, labels 0/1 for binary cross-entropy (`recmod train` on such a file:
// tests/cli/input_cli_test.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/common/errors.h"
#include "recmod/data/delimited.h"
#include "recmod/data/jsonl.h"

namespace recmod::data {
namespace jsonl_options_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

DataSchema schema(bool weighted = false) { return DataSchema{0, {"f1", "f2"}, 1, weighted}; }

std::string error_of(const std::string& text, const JsonlOptions& options, DataSchema s = schema()) {
  JsonlReader reader("d.jsonl", text, std::move(s), BadRecordPolicy::kFail, options);
  try {
    while (reader.read(16)) {
    }
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(JsonlOptions, ExtraFeaturesAreIgnoredUnlessStrict) {
  const std::string text = R"({"label": 1, "sparse": {"f1": [3], "age_bkt": [7]}})";
  JsonlReader reader("d.jsonl", text, schema());
  const auto rows = *reader.read(4);
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(3));
  JsonlOptions strict;
  strict.strict = true;
  EXPECT_EQ(error_of(text, strict),
            "d.jsonl:1: expected sparse features from [f1, f2], found \"age_bkt\" (data.strict_features is on)");
}

TEST(JsonlOptions, WeightsOnlyForFeaturesDeclaredWeighted) {
  JsonlOptions options;
  options.weighted = {true, false};
  const std::string text = R"({"label": 0, "sparse": {"f1": {"ids": [1, 2], "weights": [0.5, 2]}, "f2": [9]}})";
  JsonlReader reader("d.jsonl", text, schema(true), BadRecordPolicy::kFail, options);
  const auto rows = *reader.read(4);
  EXPECT_THAT(rows.sparse[0].weights, ElementsAre(0.5f, 2.0f));
  EXPECT_THAT(rows.sparse[1].weights, ElementsAre(1.0f));
  EXPECT_EQ(error_of(R"({"label": 0, "sparse": {"f2": {"ids": [1], "weights": [3]}}})", options, schema(true)),
            "d.jsonl:1: expected no weights for \"f2\" (declare it weighted in the config: features.sparse: "
            "{name: f2, weighted: true}), found {\"ids\":[1],\"weights\":[3]}");
}

TEST(JsonlOptions, StringIdsAreHashedLikeDelimitedText) {
  JsonlOptions options;
  options.string_id_range = {1000, 0};
  const std::string text = R"({"label": 1, "sparse": {"f1": ["a", 5, "1fbe01fe"]}})";
  JsonlReader reader("d.jsonl", text, schema(), BadRecordPolicy::kFail, options);
  const auto rows = *reader.read(4);
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(719, 5, 843));  // XXH3 test vectors mod 1000 (docs/data.md)
  EXPECT_EQ(error_of(R"({"label": 1, "sparse": {"f2": ["a"]}})", options),
            "d.jsonl:1: expected integer ids for \"f2\", found the string \"a\" (string ids need a range to be "
            "hashed into: the feature's range or its table)");
}

TEST(JsonlOptions, BinaryLabelsAreCheckedWithFileAndLine) {
  JsonlOptions options;
  options.binary_labels = true;
  EXPECT_EQ(error_of("{\"label\": 1}\n{\"label\": 4}\n", options),
            "d.jsonl:2: expected \"label\" 0 or 1 (the loss is binary cross-entropy), found 4");
  EXPECT_EQ(error_of("{\"label\": 0.5}\n", {}), "<no InputError>");  // the library alone allows any label
}

TEST(JsonlOptions, IdsOutsideAnUnhashedTableNameTheLine) {
  JsonlOptions options;
  options.id_limit = {10, 0};  // f1's table has 10 rows; f2 is hashed (any id)
  EXPECT_EQ(error_of("{\"label\": 1, \"sparse\": {\"f1\": [9], \"f2\": [123456]}}\n"
                     "{\"label\": 0, \"sparse\": {\"f1\": [3, 10]}}\n",
                     options),
            "d.jsonl:2: expected ids of \"f1\" in [0, 10) (its table has 10 rows and the feature is not hashed), "
            "found 10; give the feature a hash: mod|murmur with a range, or the table more rows");
  EXPECT_THAT(error_of("{\"label\": 1, \"sparse\": {\"f1\": {\"ids\": [-1]}}}\n", options),
              HasSubstr("d.jsonl:1: expected ids of \"f1\" in [0, 10)"));
}

}  // namespace jsonl_options_test
}  // namespace recmod::data
