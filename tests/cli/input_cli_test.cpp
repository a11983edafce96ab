// `recmod train` on the inputs and flags the library tests check in process
// (tests/data/compressed_input_test.cpp, tests/data/jsonl_options_test.cpp,
// tests/dist/backend_choice_test.cpp): a .tsv.gz, JSON lines with weighted
// and string features, and a backend the run cannot use. Kept apart so that
// those files run as one process each (cmake/RecmodDiscoverTests.cmake).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <iterator>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace input_cli_test {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kSample = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";

using test::read_bytes;

/// `path` gzipped by zlib's gzip file API into `gz`.
void gzip_file(const std::string& path, const std::string& gz) {
  const std::string text = read_bytes(path);
  gzFile out = gzopen(gz.c_str(), "wb");
  ASSERT_NE(out, nullptr) << gz;
  EXPECT_EQ(gzwrite(out, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  EXPECT_EQ(gzclose(out), Z_OK);
}

TEST(CompressedInputCli, TrainAcceptsATsvGz) {
  const std::string dir = fresh_dir("compressed_input");
  const std::string gz = dir + "/train.tsv.gz";
  gzip_file(kSample, gz);
  const std::string config = RECMOD_SOURCE_DIR "/configs/demo.yaml";
  const auto plain_run = run_recmod("train " + config + " --data " + kSample + " --out " + dir +
                                    "/plain --steps 3 --threads 1");
  ASSERT_EQ(plain_run.exit_code, 0) << plain_run.output;
  const auto gz_run = run_recmod("train " + config + " --data " + gz + " --out " + dir + "/gz --steps 3 --threads 1");
  ASSERT_EQ(gz_run.exit_code, 0) << gz_run.output;
  // Same data, same seed, one thread: the same losses and the same model.
  const auto last_loss = [](const std::string& output) {
    const auto at = output.find("last loss ");
    return at == std::string::npos ? std::string("<none>") : output.substr(at, output.find_first_of(";\n", at) - at);
  };
  EXPECT_EQ(last_loss(gz_run.output), last_loss(plain_run.output));
  EXPECT_NE(last_loss(gz_run.output), "<none>");
  const std::string model = read_bytes(dir + "/gz/model.pt");
  EXPECT_FALSE(model.empty());
  EXPECT_TRUE(model == read_bytes(dir + "/plain/model.pt"));
}

TEST(JsonlOptionsCli, TrainReadsWeightedAndStringFeaturesFromTheConfig) {
  const auto dir = fresh_dir("jsonl_options_train");
  const auto config = write_file(dir + "/m.yaml", R"(features:
  sparse: [{name: tags, weighted: true}, site]
nodes:
  ebc:
    type: EmbeddingBagCollection
    input: features.sparse
    is_weighted: true
    tables:
      - {name: t_tags, num_embeddings: 50, embedding_dim: 4, feature_names: [tags]}
      - {name: t_site, num_embeddings: 20, embedding_dim: 4, feature_names: [site]}
  logit: {type: Linear, input: ebc, out_features: 1}
output: logit
training: {batch_size: 4, steps: 3}
)");
  std::string lines;
  for (int i = 0; i < 16; ++i)
    lines += R"({"label": )" + std::to_string(i % 2) + R"(, "sparse": {"tags": {"ids": [1, 2], "weights": [0.5, 1.5]}, "site": ["s)" +
             std::to_string(i % 3) + R"("], "extra": [1]}})" + "\n";
  const auto data = write_file(dir + "/d.jsonl", lines);
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto bad = write_file(dir + "/bad.jsonl", R"({"label": 2, "sparse": {"site": [1]}})");
  r = run_recmod("train " + config + " --data " + bad + " --out " + dir + "/run2 --threads 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("bad.jsonl:1: expected \"label\" 0 or 1 (the loss is binary cross-entropy), found 2"));
  // An integer id beyond the unhashed feature's 20-row table: the line, not a lookup error at some step.
  const auto far = write_file(dir + "/far.jsonl", lines + R"({"label": 1, "sparse": {"site": [25]}})" + "\n");
  r = run_recmod("train " + config + " --data " + far + " --out " + dir + "/run3 --threads 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("far.jsonl:17: expected ids of \"site\" in [0, 20)"));
}

TEST(BackendChoiceCli, NcclWithoutCudaIsOneUsageLineWithExitCode2) {
  const std::string dir = fresh_dir("backend_choice_cli");
  const std::string cfg = write_file(dir + "/m.yaml", tiny_model_yaml());
  write_synthetic(dir + "/d.rmb", "--rows 20 --dense 2 --sparse 3 --cardinality 50");
  for (const std::string nproc : {"", " --nproc 2"}) {
    const auto r = run_recmod("train " + cfg + " --data " + dir + "/d.rmb --out " + dir + "/run --dist-backend nccl" + nproc);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_THAT(r.output, HasSubstr("recmod: --dist-backend nccl needs a CUDA device")) << nproc;
    EXPECT_THAT(r.output, Not(HasSubstr("[rank"))) << "no rank may start";
  }
}

}  // namespace input_cli_test
}  // namespace recmod::testing
