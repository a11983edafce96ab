// recmod vocab and `ids: vocab` columns: a vocabulary built from a generated
// CSV (min count, OOV share), a config whose columns look ids up in it
// (validate checks the table holds the ids and the OOV bucket), training on
// it, and inspect showing that the ids reaching the model are 0..n.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace vocab_cli_test {

using ::testing::HasSubstr;

// 300 rows: users u0..u5 often, a rare user (seen once) one row in 8; two genres a row.
std::string users_csv() {
  std::ostringstream out;
  out << "label,user,genres\n";
  const char* genres[] = {"drama", "comedy", "war", "noir"};
  for (int i = 0; i < 300; ++i) {
    out << (i * 7 % 3 == 0) << ",";
    if (i % 8 == 7)
      out << "rare" << i;
    else
      out << "u" << i % 6;
    out << "," << genres[i % 4] << "|" << genres[(i + 1) % 4] << "\n";
  }
  return out.str();
}

std::string model_yaml(int user_rows) {
  return R"(features:
  sparse: [user, genres]
nodes:
  ebc:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_user, num_embeddings: )" +
         std::to_string(user_rows) + R"(, embedding_dim: 4, feature_names: [user]}
      - {name: t_genres, num_embeddings: 5, embedding_dim: 4, feature_names: [genres]}
  logit: {type: Linear, input: ebc, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 32
  epochs: 1
  seed: 0
data:
  header: true
  columns:
    - {name: label, role: label}
    - {name: user, role: sparse, ids: vocab, vocab: vocab.txt}
    - {name: genres, role: sparse, separator: '|', ids: vocab, vocab: vocab.txt}
)";
}

TEST(VocabCliTest, BuildsAVocabularyAndTrainsOnItsIds) {
  const auto dir = fresh_dir("vocab_cli");
  const auto data = write_file(dir + "/d.csv", users_csv());
  const auto config = write_file(dir + "/m.yaml", model_yaml(7));
  // Before the vocabulary exists a reader says how to build it.
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --steps 3 --threads 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output,
              HasSubstr("no such vocabulary file (column 'user' has 'ids: vocab'); build it with recmod vocab"));

  r = run_recmod("vocab " + config + " --data " + data + " --min-count 2 --out " + dir + "/vocab.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 6 users kept of 6 + 37 rare ones; the rare ones (37 of 300 rows) go to the OOV bucket 6.
  EXPECT_THAT(
      r.output,
      HasSubstr("user: 43 distinct, 6 kept (table rows 7 with the OOV bucket 6), OOV share 12.3333% of 300 ids"));
  EXPECT_THAT(r.output,
              HasSubstr("genres: 4 distinct, 4 kept (table rows 5 with the OOV bucket 4), OOV share 0% of 600 ids"));

  r = run_recmod("validate " + config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --steps 3 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // The ids the model reads: the vocabulary's 0..5 and the OOV bucket 6.
  r = run_recmod("inspect " + data + " --config " + config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("user +0.000 +1.000 +7 +0 +6 +0"));
  EXPECT_THAT(r.output, ::testing::ContainsRegex("genres +0.000 +2.000 +4 +0 +3 +0"));

  // Every user kept: 43 ids and the bucket do not fit the 7-row table.
  r = run_recmod("vocab " + config + " --data " + data + " --out " + dir + "/vocab.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("validate " + config);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output,
              HasSubstr("data.columns[1].vocab: the vocabulary of column 'user' has 43 ids and the OOV bucket 43, "
                        "44 rows, but feature 'user' has 7"));
  // --top-k fits it again.
  r = run_recmod("vocab " + config + " --data " + data + " --top-k 6 --out " + dir + "/vocab.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("validate " + config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(VocabCliTest, BadVocabularyFileIsAConfigErrorAtTheKey) {
  const auto dir = fresh_dir("vocab_cli_bad");
  const auto config = write_file(dir + "/m.yaml", model_yaml(7));
  write_file(dir + "/vocab.txt", "recmod-vocab 1\ncolumn\tuser\t2\n5\ta\n");
  auto r = run_recmod("validate " + config);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("data.columns[1].vocab: "));
  EXPECT_THAT(r.output, HasSubstr("vocab.txt:4: expected 1 more id(s) of column 'user', found end of file"));
}

// 200 JSON lines: string user ids (u0..u4, and a rare one every 10th row), integer items.
std::string users_jsonl() {
  std::ostringstream out;
  for (int i = 0; i < 200; ++i) {
    out << "{\"label\": " << (i % 3 == 0) << ", \"sparse\": {\"user\": [\"";
    if (i % 10 == 9)
      out << "rare" << i;
    else
      out << "u" << i % 5;
    out << "\"], \"item\": [" << i % 7 << "]}}\n";
  }
  return out.str();
}

const char* kJsonlModel = R"(features:
  sparse:
    - {name: user, vocab: users.vocab, oov_buckets: 2}
    - item
nodes:
  ebc:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_user, num_embeddings: 7, embedding_dim: 4, feature_names: [user]}
      - {name: t_item, num_embeddings: 7, embedding_dim: 4, feature_names: [item]}
  logit: {type: Linear, input: ebc, out_features: 1}
output: logit
training:
  batch_size: 32
  seed: 0
data:
  format: jsonl
)";

// JSON lines' string ids through a vocabulary with two OOV buckets, and the
// run keeping its copy: eval of the run's checkpoint reads the copy after
// the config's file has changed.
TEST(VocabCliTest, JsonLinesVocabularyTrainsAndTheRunKeepsIt) {
  const auto dir = fresh_dir("vocab_cli_jsonl");
  const auto data = write_file(dir + "/d.jsonl", users_jsonl());
  const auto config = write_file(dir + "/m.yaml", kJsonlModel);
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --steps 2 --threads 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("no such vocabulary file (feature 'user' has 'vocab:'); build it with recmod vocab"));

  r = run_recmod("vocab " + config + " --data " + data + " --min-count 2 --out " + dir + "/users.vocab");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("user: 25 distinct, 5 kept (table rows 7 with 2 OOV buckets 5..6), OOV share 10% of 200 ids"));
  // Every id the model reads is a vocabulary row or one of the two buckets.
  r = run_recmod("inspect " + data + " --config " + config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("user +0.000 +1.000 +7 +0 +6 +0"));

  // convert --config reads JSON lines as train does: the .rmb holds the same ids.
  r = run_recmod("convert " + data + " " + dir + "/d.rmb --config " + config);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("inspect " + dir + "/d.rmb --format binary --config " + config);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("user +0.000 +1.000 +7 +0 +6 +0"));

  r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --steps 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir + "/run/vocab/users.vocab"), test::read_bytes(dir + "/users.vocab"));

  // The config's file rebuilt with every user (25 ids + 2 buckets > 7 rows):
  // the config no longer validates, but the run evaluates with its copy.
  r = run_recmod("vocab " + config + " --data " + data + " --out " + dir + "/users.vocab");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("validate " + config);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("features.sparse[0].vocab: the vocabulary of feature 'user' has 25 ids"));
  r = run_recmod("eval --checkpoint " + dir + "/run/model.pt --data " + data + " --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("eval " + config + " --checkpoint " + dir + "/run/model.pt --data " + data + " --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // inspect with the run's config.yaml reads the run's copy: the ids are still 0..6.
  r = run_recmod("inspect " + data + " --config " + dir + "/run/config.yaml");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::ContainsRegex("user +0.000 +1.000 +7 +0 +6 +0"));
  // --resume reads the run's copy too.
  r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --steps 4 --threads 1 --resume");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace vocab_cli_test
}  // namespace recmod::testing
