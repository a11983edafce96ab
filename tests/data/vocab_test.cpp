// Vocabularies of string ids (recmod vocab): counting per column as the
// delimited reader splits cells, min_count, top_k with ties by the id text,
// the OOV bucket, the file format's round trip and its errors at file:line.
#include "recmod/data/vocab.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "recmod/common/errors.h"

namespace recmod::data {
namespace {

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

}  // namespace
}  // namespace recmod::data
