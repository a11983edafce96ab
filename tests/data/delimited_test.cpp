// Delimited text described by a config's data.columns: RFC 4180 splitting,
// every role, XXH3 string ids (test vectors from xxhsum -H3 / Python's
// xxhash), side tables, bad cells with file:line and column, config errors
// at the key, and the real samples in ../shared/data (skipped when absent).
#include "recmod/data/delimited.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/config/data_columns.h"
#include "recmod/config/model_config.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/open_reader.h"
#include "support/test_util.h"

namespace recmod::data {
namespace delimited_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kShared = RECMOD_SOURCE_DIR "/../shared/data/";

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_delimited_" + std::to_string(::getpid()) + "_" + name;
}

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

/// A config with `features` and one EmbeddingBagCollection table per
/// sparse feature (100 rows), plus `data`.
config::ModelConfig config_with(const std::string& features, const std::string& data,
                                const std::vector<std::string>& sparse) {
  std::string tables;
  for (const auto& f : sparse)
    tables += "      - {name: t_" + f + ", num_embeddings: 100, embedding_dim: 4, feature_names: [" + f + "]}\n";
  const std::string yaml = "features:\n" + features +
                           "nodes:\n  ebc:\n    type: EmbeddingBagCollection\n    input: features.sparse\n    tables:\n" +
                           tables + "  logit: {type: Linear, input: ebc, out_features: 1}\noutput: logit\ndata:\n" + data;
  return config::parse_model_config(config::ConfigNode::load_string(yaml, "m.yaml"));
}

std::string config_error(const std::string& features, const std::string& data, const std::vector<std::string>& sparse) {
  try {
    config_with(features, data, sparse);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

ExampleColumns read_all(ExampleReader& reader) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(7)) all.append(*block);
  return all;
}

std::string read_error(const std::string& text, std::shared_ptr<const DelimitedSpec> spec) {
  DelimitedReader reader("d.csv", text, std::move(spec));
  try {
    read_all(reader);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

// ------------------------------------------------------------ splitting

std::vector<std::string> split(const std::string& text, char delimiter = ',', std::string* error = nullptr) {
  TextLines lines("t", text);
  std::string_view line;
  lines.next(line);
  std::vector<std::string_view> fields;
  std::string scratch;
  const std::string e = split_record(line, lines, delimiter, '"', fields, scratch);
  if (error) *error = e;
  return std::vector<std::string>(fields.begin(), fields.end());
}

TEST(DelimitedSplit, FollowsRfc4180) {
  EXPECT_THAT(split("a,b,,c"), ElementsAre("a", "b", "", "c"));
  EXPECT_THAT(split("\"a,b\",\"say \"\"hi\"\"\",x"), ElementsAre("a,b", "say \"hi\"", "x"));
  EXPECT_THAT(split("\"\",\"\""), ElementsAre("", ""));
  EXPECT_THAT(split("\"two\nlines\",z\nnext,row"), ElementsAre("two\nlines", "z"));
  EXPECT_THAT(split("a\tb\"c\t\"q\"", '\t'), ElementsAre("a", "b\"c", "q"));  // a quote inside a field stays
  std::string error;
  split("\"ab\"x,c", ',', &error);
  EXPECT_EQ(error, "expected ',' or the end of the line after the closing quote of field 1, found 'x'");
  split("a,\"open", ',', &error);
  EXPECT_EQ(error, "expected a closing quote, found the end of the file");
}

// ------------------------------------------------------------ hashing

TEST(DelimitedHash, IsXxh3SeededThenUnsignedModRange) {
  // XXH3_64bits of the bytes (xxhsum -H3 and Python's xxhash agree):
  //   ""         2d06800538d394c2    "a"      e6c632b61e964e1f
  //   "1fbe01fe" bc22337217045a63    "Action" 949066e115f2187f
  EXPECT_EQ(hash_string_id("", 0, UINT64_C(1) << 63), 0x2d06800538d394c2);
  EXPECT_EQ(hash_string_id("a", 0, UINT64_C(1) << 63), 0x66c632b61e964e1f);  // top bit folded by the mod
  EXPECT_EQ(hash_string_id("a", 0, 1000), 719);
  EXPECT_EQ(hash_string_id("abc", 0, 1000), 104);
  EXPECT_EQ(hash_string_id("1fbe01fe", 0, 1000), 843);
  EXPECT_EQ(hash_string_id("Action", 0, 1000), 263);
  EXPECT_EQ(hash_string_id("a", 42, 1000), 900);  // xxhash.xxh3_64_intdigest(b"a", seed=42) % 1000
  EXPECT_EQ(hash_string_id("1fbe01fe", 42, 1000), 99);
}

// ------------------------------------------------------------ roles

const char* kTwoFeatures = "  dense: {count: 2}\n  sparse: [site, tags]\n";

TEST(DelimitedReader, ReadsEveryRoleByHeaderName) {
  // Header columns found by name; 'unused' is not listed and is ignored.
  const auto config = config_with(kTwoFeatures,
                                  "  header: true\n"
                                  "  columns:\n"
                                  "    - {name: click, role: label}\n"
                                  "    - {name: price, role: dense, transform: log1p}\n"
                                  "    - {name: age, role: dense, default: '30'}\n"
                                  "    - {name: site, role: sparse, range: 1000}\n"
                                  "    - {name: tags, role: sparse, ids: int, separator: '|'}\n"
                                  "    - {name: tag_w, role: weight, of: tags}\n",
                                  {"site", "tags"});
  ASSERT_TRUE(config.data.columns);
  EXPECT_TRUE(config.data.columns->schema.weighted);
  const std::string text =
      "unused,site,click,price,age,tags,tag_w\r\n"
      "x,a,1,0,20,3|4,0.5|2\r\n"
      "\r\n"
      "\"y,z\",abc,0,-5,,,\r\n";
  DelimitedReader reader("d.csv", text, config.data.columns);
  const auto rows = read_all(reader);
  ASSERT_EQ(rows.num_rows(), 2);
  EXPECT_THAT(rows.labels, ElementsAre(1, 0));
  EXPECT_THAT(rows.dense, ElementsAre(0.0f, 20.0f, 0.0f, 30.0f));  // log1p(max(-5, 0)) = 0; empty age -> default
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(719, 104));         // XXH3 mod 1000 of "a", "abc"
  EXPECT_THAT(rows.sparse[1].ids, ElementsAre(3, 4));
  EXPECT_THAT(rows.sparse[1].offsets, ElementsAre(0, 2, 2));  // an empty cell is an empty bag
  EXPECT_THAT(rows.sparse[1].weights, ElementsAre(0.5f, 2.0f));
  EXPECT_THAT(rows.sparse[0].weights, ElementsAre(1.0f, 1.0f));
}

TEST(DelimitedReader, KeyWeightPairsFlagsThresholdAndTableRange) {
  // No header, tab-separated; 'site' hashes into its table's 100 rows.
  const auto config = config_with("  sparse: [site, tags]\n",
                                  "  delimiter: tab\n"
                                  "  columns:\n"
                                  "    - {name: rating, role: label, threshold: 4}\n"
                                  "    - {name: site, role: sparse}\n"
                                  "    - {name: tags, role: sparse, separator: ' ', weight_separator: ':', ids: int}\n"
                                  "    - {names: [drama, comedy, horror], role: flag, feature: tags}\n"
                                  "    - ts\n",
                                  {"site", "tags"});
  const std::string text = "5\ta\t7:0.5 9:2\t0\t1\t1\t111\n3.5\tabc\t\t1\t0\t0\t222";
  DelimitedReader reader("d.tsv", text, config.data.columns);
  const auto rows = read_all(reader);
  ASSERT_EQ(rows.num_rows(), 2);
  EXPECT_THAT(rows.labels, ElementsAre(1, 0));
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(hash_string_id("a", 0, 100), hash_string_id("abc", 0, 100)));
  EXPECT_THAT(rows.sparse[1].ids, ElementsAre(7, 9, 1, 2, 0));  // pairs, then flags comedy (1) and horror (2); drama (0)
  EXPECT_THAT(rows.sparse[1].offsets, ElementsAre(0, 4, 5));
  EXPECT_THAT(rows.sparse[1].weights, ElementsAre(0.5f, 2.0f, 1.0f, 1.0f, 1.0f));
}

// Padded fixed-length sequences with masks (Alimama DMR): a cell is an id
// only where its mask column holds 1.
TEST(DelimitedReader, MaskedSequenceColumnsKeepOnlyTheValidEntries) {
  const auto config = config_with("  sparse: [hist]\n",
                                  "  columns:\n"
                                  "    - {name: label, role: label}\n"
                                  "    - {names: [h1, h2, h3], role: sparse, feature: hist, ids: int, mask: [m1, m2, m3]}\n"
                                  "    - {names: [m1, m2, m3], role: ignore}\n",
                                  {"hist"});
  DelimitedReader reader("d.csv", "1,5,6,0,1,1,0\n0,7,0,0,1,0,0\n", config.data.columns);
  const auto rows = read_all(reader);
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(5, 6, 7));
  EXPECT_THAT(rows.sparse[0].offsets, ElementsAre(0, 2, 3));
  DelimitedReader bad("d.csv", "1,5,6,0,1,2,0\n", config.data.columns);
  EXPECT_THAT(test::error_of<InputError>([&] { read_all(bad); }),
              HasSubstr("d.csv:1: column 'm2': expected a mask of 0 or 1 (for column 'h2'), found '2'"));
  EXPECT_THAT(config_error("  sparse: [hist]\n",
                           "  columns:\n"
                           "    - {name: label, role: label}\n"
                           "    - {names: [h1, h2], role: sparse, feature: hist, ids: int, mask: [m1, mx]}\n"
                           "    - {names: [m1, m2], role: ignore}\n",
                           {"hist"}),
              HasSubstr("no column 'mx' in data.columns"));
}

// The real Alimama sample: 3 x 50 history columns with 50 masks, 50 match
// masks, then 16 single-valued features and the label (267 columns).
TEST(DelimitedReader, AlimamaDmrSampleWithMaskedHistories) {
  const std::string path = kShared + "alimama_dmr/alimama_sampled_train.txt";
  if (!exists(path)) GTEST_SKIP() << "no " << path;
  auto names = [](const std::string& prefix) {
    std::string out = "[";
    for (int i = 1; i <= 50; ++i) out += (i > 1 ? ", " : "") + prefix + std::to_string(i);
    return out + "]";
  };
  std::string columns = "  columns:\n";
  for (const char* h : {"btag", "cate", "brand"})
    columns += std::string("    - {names: ") + names(std::string(h) + "_") + ", role: sparse, feature: " + h +
               "_his, ids: int, mask: " + names("mask_") + "}\n";
  columns += "    - {names: " + names("mask_") + ", role: ignore}\n";
  columns += "    - {names: " + names("match_mask_") + ", role: ignore}\n";
  columns += "    - {names: [uid, cms_segid, cms_group_id, final_gender_code, age_level, pvalue_level, shopping_level, "
             "occupation, new_user_class_level, adgroup_id, cate_id, campaign_id, customer, brand], role: ignore}\n"
             "    - {name: price, role: dense}\n    - pid\n    - {name: label, role: label}\n";
  const auto config = config_with("  dense: {count: 1}\n  sparse: [btag_his, cate_his, brand_his]\n", columns,
                                  {"btag_his", "cate_his", "brand_his"});
  DelimitedReader reader(path, config.data.columns);
  const auto rows = read_all(reader);
  ASSERT_EQ(rows.num_rows(), 500);
  int64_t positives = 0;
  for (float y : rows.labels) positives += y == 1.0f;
  EXPECT_EQ(positives, 210);  // as the sample's README says
  for (size_t f = 0; f < 3; ++f) EXPECT_EQ(rows.sparse[f].ids.size(), 24879u) << f;  // the masks' 1s (awk)
}

TEST(DelimitedReader, BadCellsNameFileLineAndColumn) {
  const auto config = config_with("  dense: {count: 1}\n  sparse: [u]\n",
                                  "  columns:\n"
                                  "    - {name: label, role: label}\n"
                                  "    - {name: x, role: dense}\n"
                                  "    - {name: u, role: sparse, ids: int, separator: '|'}\n",
                                  {"u"});
  const auto& spec = config.data.columns;
  EXPECT_EQ(read_error("1,0.5,3\n4,0.5,3\n", spec),
            "d.csv:2: column 'label': expected label 0 or 1 (the loss is binary cross-entropy; give the column a "
            "'threshold: T' for label = value >= T), found '4'");
  EXPECT_EQ(read_error("1,abc,3\n", spec), "d.csv:1: column 'x': expected a finite number, found 'abc'");
  EXPECT_EQ(read_error("1,,3\n", spec),
            "d.csv:1: column 'x': expected a finite number (the cell is empty; give the column a 'default:'), found ''");
  EXPECT_EQ(read_error("1,1,3|x\n", spec),
            "d.csv:1: column 'u': expected an integer id (int64; or declare the column 'ids: hash'), found 'x'");
  EXPECT_EQ(read_error("1,1,3\n1,1\n", spec), "d.csv:2: expected 3 fields separated by ',' (as data.columns lists), found 2");
  EXPECT_THAT(read_error("1\t1\t3\n", spec), HasSubstr("is data.delimiter right for this file?"));

  // Skipped and counted under kSkip, with the first messages kept.
  DelimitedReader skipping("d.csv", "1,1,3\nx,1,3\n0,2,4\n", spec, BadRecordPolicy::kSkip);
  const auto rows = read_all(skipping);
  EXPECT_EQ(rows.num_rows(), 2);
  EXPECT_EQ(skipping.report().rows_skipped, 1);
  EXPECT_THAT(skipping.report().first_errors, ElementsAre(HasSubstr("d.csv:2: column 'label'")));
}

TEST(DelimitedReader, HeaderWithoutAConfiguredColumnIsAnError) {
  const auto config = config_with("  sparse: [u]\n",
                                  "  header: true\n  columns:\n    - {name: y, role: label}\n    - {name: u, role: sparse}\n",
                                  {"u"});
  EXPECT_EQ(read_error("y,user\n1,a\n", config.data.columns),
            "d.csv:1: column 'u' of data.columns is not in the header; the header has [y, user]");
}

// ------------------------------------------------------------ side tables

TEST(DelimitedReader, JoinsSideTablesByKey) {
  const std::string items = write(temp_path("items.txt"), "10|x|1|0\n20|y|0|1\n");
  const std::string data = "  delimiter: tab\n"
                           "  side_tables:\n"
                           "    items:\n"
                           "      file: " + items + "\n"
                           "      delimiter: '|'\n"
                           "      key: id\n"
                           "      missing: MISSING\n"
                           "      columns:\n"
                           "        - id\n"
                           "        - {name: title, role: sparse, feature: title}\n"
                           "        - {names: [action, drama], role: flag, feature: genres}\n"
                           "  columns:\n"
                           "    - {name: item, role: sparse, ids: int, join: items}\n"
                           "    - {name: label, role: label}\n";
  auto with_missing = [&](const std::string& missing) {
    std::string d = data;
    d.replace(d.find("MISSING"), 7, missing);
    return config_with("  sparse: [item, title, genres]\n", d, {"item", "title", "genres"});
  };
  const auto config = with_missing("empty");
  DelimitedReader reader("d.tsv", "10\t1\n20\t0\n30\t1\n", config.data.columns);
  const auto rows = read_all(reader);
  ASSERT_EQ(rows.num_rows(), 3);
  EXPECT_THAT(rows.sparse[0].ids, ElementsAre(10, 20, 30));
  EXPECT_THAT(rows.sparse[1].ids, ElementsAre(hash_string_id("x", 0, 100), hash_string_id("y", 0, 100)));
  EXPECT_THAT(rows.sparse[2].ids, ElementsAre(0, 1));  // action for 10, drama for 20
  EXPECT_THAT(rows.sparse[2].offsets, ElementsAre(0, 1, 2, 2));  // 30 is not in the table: empty bags

  EXPECT_EQ(read_error("10\t1\n30\t1\n", with_missing("bad").data.columns),
            "d.csv:2: column 'item': key '30' is not in side table 'items' (" + items + ")");
  ::unlink(items.c_str());
}

// Dense features looked up by key: the file's dense columns first, then the
// side table's in order; a missing key takes the columns' defaults, or is a
// bad record when one has none.
TEST(DelimitedReader, SideTablesFeedDenseFeatures) {
  const std::string users = write(temp_path("users.csv"), "id,age,income,city\nu1,30,0,ny\nu2,45,,sf\n");
  const std::string data =
      "  header: true\n"
      "  side_tables:\n"
      "    users:\n"
      "      file: " +
      users +
      "\n"
      "      header: true\n"
      "      key: id\n"
      "      columns:\n"
      "        - id\n"
      "        - {name: age, role: dense AGE_DEFAULT}\n"
      "        - {name: income, role: dense, transform: log1p, default: '1'}\n"
      "        - {name: city, role: sparse}\n"
      "  columns:\n"
      "    - {name: y, role: label}\n"
      "    - {name: user, role: sparse, join: users}\n"
      "    - {name: price, role: dense}\n";
  auto with_age_default = [&](const std::string& d) {
    std::string text = data;
    text.replace(text.find("AGE_DEFAULT"), 11, d);
    return config_with("  dense: 3\n  sparse: [user, city]\n", text, {"user", "city"});
  };
  const auto config = with_age_default(", default: '-1'");
  DelimitedReader reader("d.csv", "y,user,price\n1,u2,2.5\n0,u1,7\n1,u9,3\n", config.data.columns);
  const auto rows = read_all(reader);
  ASSERT_EQ(rows.num_rows(), 3);
  const auto log2 = static_cast<float>(std::log1p(1.0));  // u2's empty income reads as its default 1, then log1p
  EXPECT_THAT(rows.dense, ElementsAre(2.5f, 45, log2, 7, 30, 0, 3, -1, log2));  // u9: not in the table, defaults
  EXPECT_THAT(rows.sparse[1].offsets, ElementsAre(0, 1, 2, 2));
  // Without a default for age a missing key is a bad record naming it.
  EXPECT_EQ(read_error("y,user,price\n1,u1,2\n1,u9,3\n", with_age_default("").data.columns),
            "d.csv:3: column 'user': key 'u9' is not in side table 'users' (" + users +
                ") and its dense column 'age' has no 'default:' for a missing key");
  // The count includes the side table's dense columns.
  EXPECT_THAT(config_error("  dense: 2\n  sparse: [user, city]\n",
                           std::string(data).replace(data.find("AGE_DEFAULT"), 11, ""), {"user", "city"}),
              HasSubstr("3 column(s) have role dense, but features.dense is 2"));
  // A bad cell of the side table is an error at its file and line.
  write(users, "id,age,income,city\nu1,old,0,ny\n");
  try {
    DelimitedReader bad("d.csv", "y,user,price\n1,u1,2\n", config.data.columns);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr(users + ":2: column 'age' of side table 'users': expected a finite number, found 'old'"));
  }
  ::unlink(users.c_str());
}

// ------------------------------------------------------------ config errors

TEST(DataColumnsConfig, ErrorsAtTheKey) {
  const char* f = "  sparse: [u]\n";
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: y, role: lable}\n", {"u"}),
              HasSubstr("expected one of [label, dense, sparse, weight, flag, sample_weight, ignore], found 'lable'"));
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: y, role: label}\n    - {name: v, role: sparse}\n", {"u"}),
              HasSubstr("no sparse feature 'v' in features.sparse; the features are [u]"));
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: y, role: label}\n", {"u"}),
              HasSubstr("no column (or side table column) feeds sparse feature 'u' of features.sparse"));
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: u, role: sparse}\n", {"u"}), HasSubstr("no column has role label"));
  EXPECT_THAT(config_error("  dense: {count: 2}\n  sparse: [u]\n",
                           "  columns:\n    - {name: y, role: label}\n    - {name: u, role: sparse}\n    - {name: d, role: dense}\n",
                           {"u"}),
              HasSubstr("1 column(s) have role dense, but features.dense is 2"));
  EXPECT_THAT(config_error(f, "  delimiter: ',,'\n  columns: [{name: u, role: sparse}, {name: y, role: label}]\n", {"u"}),
              HasSubstr("m.yaml:"));
  EXPECT_THAT(config_error(f, "  delimiter: ';'\n", {"u"}),
              HasSubstr("'delimiter' describes delimited text; it needs 'columns'"));
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: y, role: label, separator: '|'}\n    - {name: u, role: sparse}\n", {"u"}),
              HasSubstr("'separator' applies to columns with role sparse, not label"));
  EXPECT_THAT(config_error(f, "  columns:\n    - {name: y, role: label}\n    - {name: u, role: sparse, join: items}\n", {"u"}),
              HasSubstr("no side table 'items'; data.side_tables has []"));
}

TEST(DataColumnsConfig, HashRangeLargerThanItsTableIsAConfigError) {
  // Every table in config_with has 100 rows.
  EXPECT_THAT(config_error("  sparse: [u, {name: v, hash: mod, range: 500}]\n", "  format: auto\n", {"u", "v"}),
              HasSubstr("m.yaml:2:43: features.sparse[1].range: feature 'v' is hashed into range 500, but table "
                        "'ebc.t_v' that reads it has num_embeddings 100"));
  EXPECT_THAT(config_error("  sparse: [u]\n  hash: murmur\n  range: 101\n", "  format: auto\n", {"u"}),
              HasSubstr("features.range: feature 'u' is hashed into range 101"));
  EXPECT_EQ(config_error("  sparse: [u]\n  hash: murmur\n  range: 100\n", "  format: auto\n", {"u"}), "<no ConfigError>");
}

// ------------------------------------------------------------ formats

TEST(DelimitedFormat, CsvReadAsCriteoSaysHowToDescribeIt) {
  const std::string path = write(temp_path("x.csv"), "label,a,b\n1,2,3\n");
  try {
    auto reader = open_reader(path);
    reader->read(10);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("x.csv:1: expected 40 tab-separated fields"));
    EXPECT_THAT(e.what(), HasSubstr("recmod reads criteo_tsv, jsonl, binary (.rmb) and delimited text"));
    EXPECT_THAT(e.what(), HasSubstr("data.columns"));
  }
  ::unlink(path.c_str());
  EXPECT_EQ(parse_data_format("delimited"), DataFormat::kDelimited);
}

// ------------------------------------------------------------ real samples

TEST(DelimitedRealData, MovieLens100kWithUserAndItemSideTables) {
  const std::string dir = kShared + "movielens-100k/";
  if (!exists(dir + "u.data")) GTEST_SKIP() << dir << " is absent";
  const auto config = config::load_model_config(RECMOD_SOURCE_DIR "/configs/movielens_100k.yaml");
  auto reader = open_reader(dir + "u.data", DataFormat::kAuto, std::nullopt, BadRecordPolicy::kFail, config.data.columns);
  const auto rows = read_all(*reader);
  ASSERT_EQ(rows.num_rows(), 100000);
  const auto& names = rows.schema().sparse_features;
  const auto genres = std::find(names.begin(), names.end(), "genres") - names.begin();
  ASSERT_LT(static_cast<size_t>(genres), names.size());
  // The first rating is user 196, item 242 (Kolya (1996): a comedy, flag 5); 3 stars: label 0.
  EXPECT_EQ(rows.labels[0], 0.0f);
  EXPECT_EQ(rows.sparse[genres].length(0), 1);
  EXPECT_EQ(rows.sparse[genres].ids[0], 5);
  int64_t positives = 0;
  for (float y : rows.labels) positives += y == 1.0f;
  EXPECT_EQ(positives, 55375);  // ratings 4 and 5 in u.data
}

TEST(DelimitedRealData, AvazuCriteoCsvAndTaobaoSamples) {
  const std::string avazu = kShared + "deepctr_samples/avazu_sample.txt";
  if (!exists(avazu)) GTEST_SKIP() << avazu << " is absent";
  const auto config = config::load_model_config(RECMOD_SOURCE_DIR "/configs/avazu_csv.yaml");
  auto reader = open_reader(avazu, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kFail, config.data.columns);
  const auto rows = read_all(*reader);
  ASSERT_EQ(rows.num_rows(), 100);
  int64_t clicks = 0;
  for (float y : rows.labels) clicks += y == 1.0f;
  EXPECT_EQ(clicks, 20);
  for (const auto& col : rows.sparse) EXPECT_EQ(col.ids.size(), 100u);  // one id per row and feature

  // Taobao (FuxiCTR): '^'-separated click sequences, some empty; empty user fields.
  const std::string taobao = kShared + "taobao_ad_fuxictr/train_sample.csv";
  const auto t = config_with("  dense: {count: 1}\n  sparse: [userid, adgroup_id, cms_segid, clicks]\n",
                             "  header: true\n"
                             "  columns:\n"
                             "    - {name: clk, role: label}\n"
                             "    - {name: price, role: dense, transform: log1p}\n"
                             "    - {name: userid, role: sparse}\n"
                             "    - {name: adgroup_id, role: sparse}\n"
                             "    - {name: cms_segid, role: sparse}\n"
                             "    - {name: click_sequence, role: sparse, feature: clicks, separator: '^'}\n",
                             {"userid", "adgroup_id", "cms_segid", "clicks"});
  auto tr = open_reader(taobao, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kFail, t.data.columns);
  const auto trows = read_all(*tr);
  ASSERT_EQ(trows.num_rows(), 100);
  int64_t empty_sequences = 0, longest = 0;
  for (int64_t r = 0; r < 100; ++r) {
    empty_sequences += trows.sparse[3].length(r) == 0;
    longest = std::max(longest, trows.sparse[3].length(r));
  }
  EXPECT_GT(empty_sequences, 0);
  EXPECT_LE(longest, 6);
}

TEST(DelimitedRealData, AmazonElectronicsDinHistories) {
  // ';'-separated: hist_item_ids (space-separated); hist_cate_ids; target_item; target_cate; label.
  const std::string path = kShared + "amazon_electronics_din/sample_data.txt";
  if (!exists(path)) GTEST_SKIP() << path << " is absent";
  const auto config = config_with("  sparse: [hist_items, hist_cates, item, cate]\n",
                                  "  delimiter: ';'\n"
                                  "  columns:\n"
                                  "    - {name: hist_items, role: sparse, ids: int, separator: ' '}\n"
                                  "    - {name: hist_cates, role: sparse, ids: int, separator: ' '}\n"
                                  "    - {name: item, role: sparse, ids: int}\n"
                                  "    - {name: cate, role: sparse, ids: int}\n"
                                  "    - {name: label, role: label}\n",
                                  {"hist_items", "hist_cates", "item", "cate"});
  auto reader = open_reader(path, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kFail, config.data.columns);
  const auto rows = read_all(*reader);
  ASSERT_EQ(rows.num_rows(), 100);
  // Row 1: "3737 19450;288 196;18486;674;1"; the two histories run in parallel.
  EXPECT_THAT(std::vector<int64_t>(rows.sparse[0].ids.begin(), rows.sparse[0].ids.begin() + 2), ElementsAre(3737, 19450));
  EXPECT_EQ(rows.sparse[2].ids[0], 18486);
  int64_t positives = 0, longest = 0;
  for (int64_t r = 0; r < 100; ++r) {
    EXPECT_EQ(rows.sparse[0].length(r), rows.sparse[1].length(r)) << "row " << r;
    longest = std::max(longest, rows.sparse[0].length(r));
    positives += rows.labels[r] == 1.0f;
  }
  EXPECT_EQ(positives, 48);
  EXPECT_EQ(longest, 152);
}

}  // namespace delimited_test
}  // namespace recmod::data
