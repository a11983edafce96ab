// recmod generate / train / eval / compare end to end on tiny configs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace train_cli_test {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kTinyModel = tiny_model_yaml();

struct Fixture {
  std::string dir, config, train, eval;
};

// A config, generated training data and a held-out set: the next rows of the
// same generator stream (same seed, so the same planted weights).
Fixture make_fixture(const std::string& name) {
  Fixture f;
  f.dir = fresh_dir(name);
  f.config = write_file(f.dir + "/tiny.yaml", kTinyModel);
  f.train = write_synthetic(f.dir + "/train.rmb", "--rows 3000 --dense 2 --sparse 3 --cardinality 50 --seed 11");
  f.eval = write_synthetic(f.dir + "/eval.rmb", "--rows 1000 --skip 3000 --dense 2 --sparse 3 --cardinality 50 --seed 11");
  return f;
}

nlohmann::json eval_json(const Fixture& f, const std::string& run, const std::string& extra = "") {
  auto r = run_recmod("eval " + f.config + " --checkpoint " + run + "/model.pt --data " + f.eval + " --json " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto last_line = r.output.substr(r.output.rfind('{'));
  return nlohmann::json::parse(last_line);
}

// The tests write their data with write_synthetic, in process: it must write
// the bytes `recmod generate` writes, held-out continuations and JSON lines too.
TEST(TrainCliTest, GenerateInProcessWritesWhatTheCommandWrites) {
  const auto dir = fresh_dir("generate_in_process");
  for (const std::string args : {"--rows 70 --skip 30 --dense 2 --sparse 3 --cardinality 50 --max-ids 3 --seed 11",
                                 "--rows 40 --dense 1 --sparse 2 --cardinality 9 --seed 4 --format jsonl"}) {
    const auto r = run_recmod("generate " + args + " --out " + dir + "/cli");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_synthetic(dir + "/in_process", args);
    EXPECT_GT(test::read_bytes(dir + "/cli").size(), 100u) << args;
    EXPECT_EQ(test::read_bytes(dir + "/cli"), test::read_bytes(dir + "/in_process")) << args;
  }
}

TEST(TrainCliTest, LearnsThePlantedSignal) {
  auto f = make_fixture("train_generated");
  auto r = run_recmod("train " + f.config + " --data " + f.train + " --out " + f.dir + "/run --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("checkpoint: " + f.dir + "/run/model.pt"));
  auto m = eval_json(f, f.dir + "/run");
  EXPECT_GT(m["auc"].get<double>(), 0.7) << m.dump();
  EXPECT_EQ(m["count"].get<int64_t>(), 1000);
  for (const char* key : {"ne", "log_loss", "accuracy", "calibration"}) EXPECT_TRUE(m.contains(key)) << key;
}

TEST(TrainCliTest, ResumeEqualsUninterruptedAndCompareSeesTheDifference) {
  auto f = make_fixture("train_resume");
  auto whole = f.dir + "/whole", split = f.dir + "/split";
  ASSERT_EQ(run_recmod("train " + f.config + " --data " + f.train + " --out " + whole + " --steps 40 --threads 1").exit_code, 0);
  ASSERT_EQ(run_recmod("train " + f.config + " --data " + f.train + " --out " + split + " --steps 25 --threads 1").exit_code, 0);
  auto again = run_recmod("train " + f.config + " --data " + f.train + " --out " + split + " --steps 40 --threads 1");
  EXPECT_EQ(again.exit_code, 2);  // refuses to overwrite without --resume
  EXPECT_THAT(again.output, HasSubstr("pass --resume"));
  auto resumed = run_recmod("train " + f.config + " --data " + f.train + " --out " + split + " --steps 40 --resume --threads 1");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resuming"));

  eval_json(f, whole, "--predictions " + f.dir + "/whole.txt");
  eval_json(f, split, "--predictions " + f.dir + "/split.txt");
  auto same = run_recmod("compare " + f.dir + "/whole.txt " + f.dir + "/split.txt --rtol 0 --atol 0");
  EXPECT_EQ(same.exit_code, 0) << same.output;

  // A model that stopped at step 25 predicts differently.
  auto early = f.dir + "/early";
  ASSERT_EQ(run_recmod("train " + f.config + " --data " + f.train + " --out " + early + " --steps 25 --threads 1").exit_code, 0);
  eval_json(f, early, "--predictions " + f.dir + "/early.txt");
  auto differ = run_recmod("compare " + f.dir + "/early.txt " + f.dir + "/whole.txt");
  EXPECT_EQ(differ.exit_code, 1);
  EXPECT_THAT(differ.output, HasSubstr("recmod: first difference at line"));
}

TEST(TrainCliTest, CriteoSample) {
  auto dir = fresh_dir("train_criteo");
  std::string data = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";
  std::string config = write_file(dir + "/criteo.yaml", R"(features:
  dense: {count: 13}
  sparse: [C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, C18, C19, C20, C21, C22, C23, C24, C25, C26]
  hash: murmur
  range: 1000
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_all, num_embeddings: 1000, embedding_dim: 4, feature_names: [C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, C18, C19, C20, C21, C22, C23, C24, C25, C26]}
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  embedding_optimizer: {type: adagrad, lr: 0.1}
  dense_optimizer: {type: adam, lr: 0.01}
  batch_size: 50
  epochs: 3
data:
  format: criteo_tsv
)");
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto e = run_recmod("eval " + config + " --checkpoint " + dir + "/run/model.pt --data " + data);
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_THAT(e.output, HasSubstr("count"));
  EXPECT_THAT(e.output, HasSubstr("1000"));
  auto auc_at = e.output.find("auc");
  ASSERT_NE(auc_at, std::string::npos) << e.output;
  EXPECT_GT(std::stod(e.output.substr(e.output.find_first_of("0123456789", auc_at))), 0.7) << e.output;
}

TEST(TrainCliTest, BadDataNamesFileAndLineAndExits1) {
  auto dir = fresh_dir("train_bad_data");
  std::string good = "0\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13";
  for (int i = 0; i < 26; ++i) good += "\tab12cd34";
  auto data = write_file(dir + "/bad.tsv", good + "\n" + good + "\n1\t2\t3\n");
  auto config = write_file(dir + "/m.yaml", R"(features:
  dense: {count: 13}
  sparse: [C1]
  hash: mod
  range: 10
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables: [{name: t, num_embeddings: 10, embedding_dim: 2, feature_names: [C1]}]
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
)");
  auto r = run_recmod("train " + config + " --data " + data + " --format criteo_tsv --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recmod: "));
  EXPECT_THAT(r.output, HasSubstr("bad.tsv:3"));
}

TEST(TrainCliTest, BadConfigExits2BeforeTouchingData) {
  auto dir = fresh_dir("train_bad_config");
  auto config = write_file(dir + "/m.yaml", "features: {dense: 2}\nnodes:\n  a: {type: Linear, input: features.dense}\noutput: a\n");
  auto r = run_recmod("train " + config + " --data /nonexistent.tsv --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, StartsWith("recmod: "));
  EXPECT_THAT(r.output, HasSubstr("m.yaml:3:6: nodes.a: missing required field 'out_features'"));
}

// Issue 18: eval on an empty file printed AUC 0.5 for 0 examples and exited 0.
TEST(TrainCliTest, EvalOnAnEmptyFileIsRefused) {
  auto dir = fresh_dir("eval_empty");
  auto config = write_file(dir + "/m.yaml", kTinyModel);
  auto r = run_recmod("generate --rows 100 --dense 2 --sparse 3 --cardinality 50 --seed 11 --out " + dir + "/t.rmb");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("train " + config + " --data " + dir + "/t.rmb --steps 2 --out " + dir + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto empty = write_file(dir + "/empty.jsonl", "");
  r = run_recmod("eval " + config + " --checkpoint " + dir + "/run/model.pt --data " + empty + " --format jsonl");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recmod: " + empty + ": no examples to evaluate"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("auc")));
}

TEST(TrainCliTest, BadDataFailsBeforeTheRunDirectoryExists) {
  auto dir = fresh_dir("train_empty_eval");
  auto config = write_file(dir + "/m.yaml", kTinyModel);
  auto r = run_recmod("generate --rows 100 --dense 2 --sparse 3 --cardinality 50 --seed 11 --format jsonl --out " + dir +
                      "/t.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto empty = write_file(dir + "/empty.jsonl", "");
  r = run_recmod("train " + config + " --data " + dir + "/t.jsonl --eval-data " + empty + " --format jsonl --out " + dir +
                 "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recmod: " + empty + ": no examples to evaluate"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/run"));
  // training data that does not fit the model: refused, nothing created either
  const auto wrong = write_file(dir + "/wrong.yaml", tiny_model_yaml().replace(tiny_model_yaml().find("count: 2"), 8, "count: 5"));
  r = run_recmod("train " + wrong + " --data " + dir + "/t.jsonl --format jsonl --out " + dir + "/run2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run2"));
}

TEST(TrainCliTest, SetOverridesConfigKeysAndTheRunKeepsTheEffectiveConfig) {
  auto f = make_fixture("train_set");
  // A deeper dense_arch and one epoch, from the command line, on two ranks.
  auto r = run_recmod("train " + f.config + " --set 'nodes.dense_arch.layer_sizes=[8, 4]' --set training.epochs=1 --data " +
                      f.train + " --out " + f.dir + "/run --nproc 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(f.dir + "/run/config.yaml");
  const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(saved, HasSubstr("with --set [nodes.dense_arch.layer_sizes=[8, 4], training.epochs=1]"));
  // The run's config.yaml is the one it ran with: eval without a config
  // builds the two-layer dense_arch and loads the checkpoint.
  auto e = run_recmod("eval --checkpoint " + f.dir + "/run/model.pt --data " + f.eval + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  // The file's own one-layer dense_arch does not fit that checkpoint.
  auto mismatch = run_recmod("eval " + f.config + " --checkpoint " + f.dir + "/run/model.pt --data " + f.eval);
  EXPECT_NE(mismatch.exit_code, 0);
  auto bad = run_recmod("train " + f.config + " --set training.epochs=two --data " + f.train + " --out " + f.dir + "/bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("recmod: --set training.epochs=two: training.epochs: expected an integer, found 'two'"));
}

}  // namespace train_cli_test
}  // namespace recmod::testing
