// Vocabularies of string ids (recmod vocab): counting per column as the
// delimited reader splits cells, min_count, top_k with ties by the id text,
// the OOV bucket, the file format's round trip and its errors at file:line.
#include "recmod/data/vocab.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#define XXH_INLINE_ALL  // the documented hash itself, not recmod's wrapper of it
#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/config/model_config.h"
#include "recmod/data/jsonl.h"
#include "recmod/data/delimited.h"

namespace recmod::data {
namespace vocab_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_vocab_" + std::to_string(::getpid()) + "_" + name;
}

ColumnSpec sparse(const std::string& name, char separator = 0, char weight_separator = 0) {
  ColumnSpec c;
  c.name = name;
  c.role = ColumnRole::kSparse;
  c.ids = IdKind::kHash;
  c.range = 1000;
  c.separator = separator;
  c.weight_separator = weight_separator;
  return c;
}

// label, user (one id), genres (a|b, k:w pairs), count (an int column: not counted).
DelimitedSpec spec() {
  DelimitedSpec s;
  s.header = true;
  ColumnSpec label;
  label.name = "label";
  label.role = ColumnRole::kLabel;
  s.columns.push_back(label);
  s.columns.push_back(sparse("user"));
  s.columns.push_back(sparse("genres", '|', ':'));
  ColumnSpec n = sparse("n");
  n.ids = IdKind::kInt;
  s.columns.push_back(n);
  return s;
}

const char* kData =
    "label,user,genres,n,extra\n"
    "1,bob,drama:2|comedy,1,x\n"
    "0,alice,drama,2,x\n"
    "1,bob,,3,x\n"
    "\n"
    "0,carol,\"comedy|war\",4,x\n"
    "1,alice,drama,5,x\n";

std::string error_of(const std::string& text) {
  try {
    parse_vocabulary("v.txt", text);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(Vocab, CountsEveryStringColumnAsTheReaderSplitsIt) {
  const auto v = build_vocabulary("d.csv", kData, spec(), {});
  ASSERT_EQ(v.columns.size(), 2u);  // the int column is not counted
  const auto& user = *v.find("user");
  EXPECT_THAT(user.ids, ElementsAre("alice", "bob", "carol"));  // 2, 2 (tie: by text), 1
  EXPECT_THAT(user.counts, ElementsAre(2, 2, 1));
  EXPECT_EQ(user.distinct, 3);
  EXPECT_EQ(user.total, 5);
  EXPECT_EQ(user.oov, 0);
  const auto& genres = *v.find("genres");
  EXPECT_THAT(genres.ids, ElementsAre("drama", "comedy", "war"));  // weights dropped, empty cell no id
  EXPECT_THAT(genres.counts, ElementsAre(3, 2, 1));
  EXPECT_EQ(v.find("n"), nullptr);
}

TEST(Vocab, MinCountTopKAndTheOovBucket) {
  auto v = build_vocabulary("d.csv", kData, spec(), {2, 0});
  EXPECT_THAT(v.find("user")->ids, ElementsAre("alice", "bob"));
  EXPECT_EQ(v.find("user")->oov, 1);
  v = build_vocabulary("d.csv", kData, spec(), {1, 1});
  const auto& user = *v.find("user");
  EXPECT_THAT(user.ids, ElementsAre("alice"));  // top 1 of a 2-2 tie: the smaller text
  EXPECT_EQ(user.oov, 3);
  EXPECT_EQ(user.lookup("alice"), 0);
  EXPECT_EQ(user.lookup("bob"), 1);  // the OOV bucket is n
  EXPECT_EQ(user.lookup("zed"), user.oov_id());
  EXPECT_EQ(user.num_rows(), 2);
  EXPECT_THROW(build_vocabulary("d.csv", kData, spec(), {0, 0}), InputError);
  EXPECT_THROW(build_vocabulary("d.csv", kData, spec(), {1, -1}), InputError);
}

TEST(Vocab, WithoutAHeaderColumnsAreInOrder) {
  DelimitedSpec s = spec();
  s.header = false;
  const auto v = build_vocabulary("d.csv", "1,b,x,1\n0,a,y|x,2\n", s, {});
  EXPECT_THAT(v.find("user")->ids, ElementsAre("a", "b"));
  EXPECT_THAT(v.find("genres")->ids, ElementsAre("x", "y"));
}

TEST(Vocab, BadDataNamesFileAndLine) {
  try {
    build_vocabulary("d.csv", "label,user,genres,n\n1,a,b,1\n1,a\n", spec(), {});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("d.csv:3: expected 4 fields"));
  }
  try {
    build_vocabulary("d.csv", "label,usr,genres,n\n", spec(), {});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("d.csv:1: column 'user' of data.columns is not in the header"));
  }
}

TEST(Vocab, SavesAndLoadsTheSameIds) {
  const auto v = build_vocabulary("d.csv", kData, spec(), {});
  const std::string path = temp_path("v.txt");
  save_vocabulary(v, path);
  const auto back = load_vocabulary(path);
  ASSERT_EQ(back.columns.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.columns[i].column, v.columns[i].column);
    EXPECT_EQ(back.columns[i].ids, v.columns[i].ids);
    EXPECT_EQ(back.columns[i].counts, v.columns[i].counts);
  }
  EXPECT_EQ(back.find("genres")->lookup("war"), 2);
  EXPECT_EQ(back.find("genres")->lookup("western"), 3);
  std::ifstream in(path);
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_EQ(first, "recmod-vocab 1");
  EXPECT_EQ(second, "column\tuser\t3");
  // Ids with tabs and spaces survive; line breaks cannot be saved.
  Vocabulary odd;
  odd.columns.push_back({});
  odd.columns[0].column = "c";
  odd.columns[0].ids = {" a\tb ", ""};
  odd.columns[0].counts = {2, 1};
  save_vocabulary(odd, path);
  EXPECT_THAT(load_vocabulary(path).columns[0].ids, ElementsAre(" a\tb ", ""));
  odd.columns[0].ids = {"a\nb"};
  EXPECT_THROW(save_vocabulary(odd, path), InputError);
  ::unlink(path.c_str());
}

TEST(Vocab, BadFilesNameTheLine) {
  EXPECT_THAT(error_of(""), HasSubstr("v.txt:1: expected 'recmod-vocab 1'"));
  EXPECT_THAT(error_of("vocab\n"), HasSubstr("v.txt:1: expected 'recmod-vocab 1'"));
  EXPECT_THAT(error_of("recmod-vocab 1\n"), HasSubstr("v.txt:2: expected a 'column' line"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\tx\n"),
              HasSubstr("v.txt:2: expected 'column<TAB><name><TAB><number of ids>'"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t2\n3\ta\nb\n"),
              HasSubstr("v.txt:4: expected '<count><TAB><id>' (1 more id(s) of column 'u'), found 'b'"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t3\n3\ta\n2\tb\n"),
              HasSubstr("v.txt:5: expected 1 more id(s) of column 'u', found end of file"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t2\n3\ta\n2\ta\n"),
              HasSubstr("v.txt:4: id 'a' of column 'u' appears twice"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t0\ncolumn\tu\t0\n"), HasSubstr("v.txt:3: column 'u' appears twice"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t1\n3\ta"),
              HasSubstr("v.txt:3: expected a line ending in a line break"));
  EXPECT_THAT(error_of("recmod-vocab 1\ncolumn\tu\t1\n-3\ta\n"), HasSubstr("v.txt:3: expected '<count><TAB><id>'"));
}

// docs/data.md: an id not in the vocabulary goes to row n + (XXH3_64bits_withSeed(text, hash_seed) mod K).
int64_t oov_row(const std::string& text, uint64_t seed, int64_t n, int64_t k) {
  return n + static_cast<int64_t>(XXH3_64bits_withSeed(text.data(), text.size(), seed) % static_cast<uint64_t>(k));
}

TEST(Vocab, SeveralOovBucketsHashAfterTheVocabulary) {
  const auto v = build_vocabulary("d.csv", kData, spec(), {});
  const auto& user = *v.find("user");  // alice, bob, carol: n = 3
  EXPECT_EQ(user.id("bob", 4, 7), 1);
  EXPECT_EQ(user.num_rows(4), 7);
  std::set<int64_t> rows;
  for (int i = 0; i < 64; ++i) {
    const std::string text = "new" + std::to_string(i);
    const int64_t row = user.id(text, 4, 7);
    EXPECT_EQ(row, oov_row(text, 7, 3, 4)) << text;
    EXPECT_EQ(user.id(text, 1, 7), 3) << text;  // one bucket: n, as before
    rows.insert(row);
  }
  EXPECT_EQ(rows, (std::set<int64_t>{3, 4, 5, 6}));  // every bucket used, none outside n..n+K-1
}

/// A directory with `files` written in it; returns its path.
std::string dir_with(const std::string& name, const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string dir = temp_path(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const auto& [file, text] : files) std::ofstream(dir + "/" + file, std::ios::binary) << text;
  return dir;
}

std::string model_yaml(const std::string& features, int user_rows, const std::string& data) {
  return "features:\n" + features +
         "nodes:\n  ebc:\n    type: EmbeddingBagCollection\n    input: features.sparse\n    tables:\n"
         "      - {name: t_user, num_embeddings: " +
         std::to_string(user_rows) +
         ", embedding_dim: 4, feature_names: [user]}\n"
         "      - {name: t_item, num_embeddings: 50, embedding_dim: 4, feature_names: [item]}\n"
         "  logit: {type: Linear, input: ebc, out_features: 1}\noutput: logit\n" +
         data;
}

template <typename F>
std::string config_error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

TEST(Vocab, DelimitedColumnReadsTextsOutsideItThroughTheOovBuckets) {
  const std::string vocab = "recmod-vocab 1\ncolumn\tuser\t2\n5\tann\n3\tbob\n";
  const std::string columns =
      "data:\n  hash_seed: 11\n  columns:\n    - {name: label, role: label}\n"
      "    - {name: user, role: sparse, ids: vocab, vocab: v.txt, oov_buckets: 3}\n"
      "    - {name: item, role: sparse, ids: int}\n";
  const auto dir = dir_with("oov_columns", {{"v.txt", vocab},
                                            {"m.yaml", model_yaml("  sparse: [user, item]\n", 5, columns)},
                                            {"small.yaml", model_yaml("  sparse: [user, item]\n", 4, columns)}});
  const auto config = config::load_model_config(dir + "/m.yaml");
  const std::vector<std::string> users = {"bob", "zoe", "ann", "max", "kim", "x"};
  std::string text;
  for (const auto& u : users) text += "1," + u + ",3\n";
  DelimitedReader reader("d.csv", text, config.data.columns);
  const auto block = reader.read(100);
  ASSERT_TRUE(block);
  std::vector<int64_t> expected;
  for (const auto& u : users) expected.push_back(u == "ann" ? 0 : u == "bob" ? 1 : oov_row(u, 11, 2, 3));
  EXPECT_EQ(block->sparse[0].ids, expected);
  // 2 ids + 3 buckets = 5 rows: a 4-row table is refused at the key.
  EXPECT_THAT(config_error_of([&] { config::load_model_config(dir + "/small.yaml"); }),
              HasSubstr("data.columns[1].vocab: the vocabulary of column 'user' has 2 ids and 3 OOV buckets 2..4, 5 "
                        "rows, but feature 'user' has 4"));
  // ... unless the files are not read (recmod vocab, about to rewrite them).
  config::LoadOptions no_files;
  no_files.read_vocab_files = false;
  EXPECT_EQ(config::load_model_config(dir + "/small.yaml", {}, no_files).data.columns->columns[1].vocab, nullptr);
  const auto bad = dir_with(
      "oov_columns_bad",
      {{"m.yaml", model_yaml("  sparse: [user, item]\n", 5,
                             "data:\n  columns:\n    - {name: label, role: label}\n    - {name: user, role: sparse}\n"
                             "    - {name: item, role: sparse, ids: int, oov_buckets: 2}\n")}});
  EXPECT_THAT(config_error_of([&] { config::load_model_config(bad + "/m.yaml"); }),
              HasSubstr("data.columns[2].oov_buckets: 'oov_buckets' applies to columns with 'ids: vocab'"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(bad);
}

// A side table's string-id column: counted from the side table's file (each
// of its rows once) and read through the vocabulary when joined.
TEST(Vocab, SideTableColumnsAreCountedAndReadThroughTheVocabulary) {
  const std::string data =
      "data:\n  header: true\n  side_tables:\n    users:\n      file: users.csv\n      header: true\n"
      "      key: id\n      columns:\n        - id\n"
      "        - {name: city, role: sparse, feature: item, ids: vocab, vocab: v.txt}\n"
      "  columns:\n    - {name: label, role: label}\n    - {name: user, role: sparse, join: users}\n";
  const auto dir = dir_with("side_vocab", {{"users.csv", "id,city\nu1,ny\nu2,sf\nu3,ny\n"},
                                           {"d.csv", "label,user\n1,u2\n0,u1\n1,u4\n"},
                                           {"m.yaml", model_yaml("  sparse: [user, item]\n", 100, data)}});
  config::LoadOptions no_files;
  no_files.read_vocab_files = false;
  const auto spec = config::load_model_config(dir + "/m.yaml", {}, no_files).data.columns;
  const auto v = build_vocabulary(dir + "/d.csv", *spec, {});
  ASSERT_EQ(v.columns.size(), 2u);
  EXPECT_EQ(v.columns[0].column, "user");  // the data file's hashed column
  EXPECT_THAT(v.columns[0].ids, ElementsAre("u1", "u2", "u4"));
  EXPECT_EQ(v.columns[1].column, "city");  // the side table's rows, once each
  EXPECT_THAT(v.columns[1].ids, ElementsAre("ny", "sf"));
  EXPECT_THAT(v.columns[1].counts, ElementsAre(2, 1));
  save_vocabulary(v, dir + "/v.txt");
  const auto config = config::load_model_config(dir + "/m.yaml");
  EXPECT_EQ(config.data.vocab_files, (std::vector<std::string>{dir + "/v.txt"}));
  DelimitedReader reader(dir + "/d.csv", config.data.columns);
  const auto block = reader.read(10);
  ASSERT_TRUE(block);
  EXPECT_THAT(block->sparse[1].ids, ElementsAre(1, 0));  // u2: sf, u1: ny; u4 is not in the table
  EXPECT_THAT(block->sparse[1].offsets, ElementsAre(0, 1, 2, 2));
  // A missing side-table file is named.
  std::filesystem::remove(dir + "/users.csv");
  EXPECT_THROW(build_vocabulary(dir + "/d.csv", *spec, {}), InputError);
  std::filesystem::remove_all(dir);
}

TEST(Vocab, CountsJsonLinesFeatures) {
  const std::string text =
      R"({"label": 1, "sparse": {"user": ["bob", "ann"], "item": {"ids": [3, "x"], "weights": [1, 2]}}})"
      "\n\n"
      R"({"label": 0, "sparse": {"user": ["bob"], "other": ["q"]}})"
      "\n"
      R"({"label": 0})"
      "\n"
      R"({"label": 1, "sparse": {"item": [3, 18446744073709551615]}})"
      "\n";
  const auto v = build_jsonl_vocabulary("d.jsonl", text, {"user", "item"}, {});
  ASSERT_EQ(v.columns.size(), 2u);
  EXPECT_EQ(v.columns[0].column, "user");
  EXPECT_THAT(v.columns[0].ids, ElementsAre("bob", "ann"));
  EXPECT_THAT(v.columns[0].counts, ElementsAre(2, 1));
  EXPECT_THAT(v.columns[1].ids, ElementsAre("3", "18446744073709551615", "x"));  // integers by their text
  EXPECT_THAT(v.columns[1].counts, ElementsAre(2, 1, 1));
  EXPECT_EQ(v.columns[1].total, 4);
  EXPECT_THAT(build_jsonl_vocabulary("d.jsonl", text, {"user"}, {2, 0}).columns[0].ids, ElementsAre("bob"));
  auto error = [](const std::string& bad) {
    try {
      build_jsonl_vocabulary("d.jsonl", bad, {"user"}, {});
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("<no InputError>");
  };
  EXPECT_THAT(error("{}\n{\"sparse\": \n"), HasSubstr("d.jsonl:2: expected a JSON object"));
  EXPECT_THAT(error("{\"sparse\": {\"user\": [1.5]}}\n"),
              HasSubstr("d.jsonl:1: expected string or integer ids for \"user\", found '1.5'"));
  EXPECT_THAT(error("{\"sparse\": {\"user\": 3}}\n"),
              HasSubstr("d.jsonl:1: expected the ids of \"user\" to be a list"));
}

TEST(Vocab, JsonLinesFeaturesMapThroughTheirVocabulary) {
  const std::string vocab = "recmod-vocab 1\ncolumn\tuser\t2\n5\tann\n3\t42\n";
  const std::string features = "  sparse:\n    - {name: user, vocab: v.txt, oov_buckets: 2}\n    - item\n";
  const auto dir = dir_with(
      "jsonl_vocab",
      {{"v.txt", vocab}, {"m.yaml", model_yaml(features, 4, "")}, {"small.yaml", model_yaml(features, 3, "")}});
  const auto config = config::load_model_config(dir + "/m.yaml");
  ASSERT_NE(config.features.sparse[0].vocab, nullptr);
  EXPECT_EQ(config.features.sparse[0].oov_buckets, 2);
  EXPECT_EQ(config.features.sparse[1].vocab, nullptr);
  EXPECT_EQ(config.data.vocab_files, (std::vector<std::string>{dir + "/v.txt"}));
  JsonlOptions options;
  options.vocab = {config.features.sparse[0].vocab, nullptr};
  options.oov_buckets = {2, 1};
  options.hash_seed = 5;
  DataSchema schema{0, {"user", "item"}, 1, false};
  const std::string text = R"({"label": 1, "sparse": {"user": ["ann", 42, "42", "zoe", 7], "item": [9]}})"
                           "\n";
  JsonlReader reader("d.jsonl", text, schema, BadRecordPolicy::kFail, options);
  const auto block = reader.read(10);
  ASSERT_TRUE(block);
  EXPECT_EQ(block->sparse[0].ids, (std::vector<int64_t>{0, 1, 1, oov_row("zoe", 5, 2, 2), oov_row("7", 5, 2, 2)}));
  EXPECT_EQ(block->sparse[1].ids, (std::vector<int64_t>{9}));  // no vocabulary: the integer as it is
  EXPECT_THAT(config_error_of([&] { config::load_model_config(dir + "/small.yaml"); }),
              HasSubstr("features.sparse[0].vocab: the vocabulary of feature 'user' has 2 ids and 2 OOV buckets "
                        "2..3, 4 rows, but feature 'user' has 3"));
  // A run directory's copy (by base name) is read instead of the config's file.
  const auto run = dir_with("jsonl_vocab_run", {{"v.txt", "recmod-vocab 1\ncolumn\tuser\t1\n1\tzoe\n"}});
  config::LoadOptions from_run;
  from_run.vocab_dir = run;
  const auto copied = config::load_model_config(dir + "/m.yaml", {}, from_run);
  EXPECT_EQ(copied.features.sparse[0].vocab_path, run + "/v.txt");
  EXPECT_EQ(copied.features.sparse[0].vocab->lookup("zoe"), 0);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(run);
}

}  // namespace vocab_test
}  // namespace recmod::data
