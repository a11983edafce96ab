// recmod quantize + eval of the quantized checkpoint end to end, on the
// shipped demo config (configs/demo.yaml) over a small generated data set.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace quantize_cli_test {

using ::testing::HasSubstr;

const std::string kDemo = RECMOD_SOURCE_DIR "/configs/demo.yaml";

nlohmann::json last_json(const RunResult& r) { return nlohmann::json::parse(r.output.substr(r.output.rfind("\n{") + 1)); }

/// A demo model trained briefly, once for all tests of this file.
struct Trained {
  std::string dir, train, eval, model;
};
const Trained& trained() {
  static const Trained t = [] {
    Trained t;
    // Named after the test that asks first: ctest runs each test of this
    // file in its own process, side by side, and each builds its own copy.
    t.dir = fresh_dir(std::string("quantize_demo_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    t.train = t.dir + "/train.rmb";
    t.eval = t.dir + "/eval.rmb";
    write_synthetic(t.train, "--rows 6000 --dense 13 --sparse 26 --cardinality 1000 --seed 1");
    write_synthetic(t.eval, "--rows 2000 --skip 6000 --dense 13 --sparse 26 --cardinality 1000 --seed 1");
    auto r = run_recmod("train " + kDemo + " --data " + t.train + " --out " + t.dir + "/run --threads 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    t.model = t.dir + "/run/model.pt";
    return t;
  }();
  return t;
}

TEST(QuantizeCliTest, Int8AndInt4CheckpointsEvaluateCloseToTheFloatModel) {
  const Trained& t = trained();
  const std::string int8 = t.dir + "/int8.pt", mixed = t.dir + "/mixed.pt";
  auto r = run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + int8 + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = last_json(r);
  ASSERT_EQ(report["tables"].size(), 26u);
  const auto& t1 = report["tables"][0];
  EXPECT_EQ(t1["table"], "t_C1");
  EXPECT_EQ(t1["type"], "INT8");
  EXPECT_EQ(t1["bytes_before"].get<int64_t>(), 2000 * 8 * 4);
  EXPECT_EQ(t1["bytes_after"].get<int64_t>(), 2000 * (8 + 4 + 4));  // codes + fp32 scale + fp32 bias
  EXPECT_GT(t1["max_abs_error"].get<double>(), 0.0);
  EXPECT_LE(t1["mean_abs_error"].get<double>(), t1["max_abs_error"].get<double>());

  r = run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + mixed +
                 " --dtype int4 --table t_C2=int2 --table t_C3=fp16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("sparse_arch.t_C1"));
  EXPECT_THAT(r.output, HasSubstr("quantized checkpoint: " + mixed));

  // The float model's metrics, then each quantized one against it.
  r = run_recmod("eval " + kDemo + " --checkpoint " + int8 + " --data " + t.eval + " --json --baseline " + t.model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto m = last_json(r);
  const double auc = m["baseline"]["auc"].get<double>();
  EXPECT_GT(auc, 0.6) << m.dump();
  EXPECT_NEAR(m["change"]["auc"].get<double>(), m["auc"].get<double>() - auc, 1e-12);
  EXPECT_LT(std::abs(m["change"]["auc"].get<double>()), 0.003) << m.dump();
  r = run_recmod("eval " + kDemo + " --checkpoint " + mixed + " --data " + t.eval + " --json --baseline " + t.model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  m = last_json(r);
  EXPECT_LT(std::abs(m["change"]["auc"].get<double>()), 0.03) << m.dump();
  EXPECT_EQ(m["count"].get<int64_t>(), 2000);
}

TEST(QuantizeCliTest, ACheckpointThatDoesNotFitTheConfigNamesTheTable) {
  const Trained& t = trained();
  const std::string int4 = t.dir + "/int4.pt";
  ASSERT_EQ(run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + int4 + " --dtype int4").exit_code,
            0);
  // The config's t_C5 has 3000 rows; the checkpoint's has 2000.
  std::ifstream in(kDemo);
  std::stringstream text;
  text << in.rdbuf();
  std::string yaml = text.str();
  const std::string row = "{name: t_C5, num_embeddings: 2000,";
  ASSERT_NE(yaml.find(row), std::string::npos);
  yaml.replace(yaml.find(row), row.size(), "{name: t_C5, num_embeddings: 3000,");
  const std::string more_rows = write_file(t.dir + "/more_rows.yaml", yaml);
  auto r = run_recmod("eval " + more_rows + " --checkpoint " + int4 + " --data " + t.eval);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("(node 'sparse_arch'): table 't_C5' (INT4, 3000 x 8): key "
                                  "'embedding_bags.t_C5.weight' has 2000 rows, the table has 3000"));

  r = run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + t.dir + "/x.pt --table t_C99=int4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("no EmbeddingBagCollection or EmbeddingCollection has a table 't_C99'"));
  r = run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + t.dir + "/x.pt --dtype int3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown table data type 'int3'"));
  r = run_recmod("quantize " + kDemo + " --checkpoint " + int4 + " --out " + t.dir + "/x.pt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("is already quantized"));
}

TEST(QuantizeCliTest, TheConfigsDataTypesAreUsedByEvalQuantizeAndProfile) {
  const Trained& t = trained();
  const std::string int4 = "--set 'nodes.sparse_arch.tables[0].data_type=int4'";
  // eval of the float checkpoint with t_C1 declared int4: the node is
  // quantized (t_C1 INT4, the others FP32), close to the float model.
  auto r = run_recmod("eval " + kDemo + " " + int4 + " --checkpoint " + t.model + " --data " + t.eval +
                      " --json --baseline " + t.model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("quantized as configured: 26 table(s)"));
  auto m = last_json(r);
  EXPECT_NE(m["auc"].get<double>(), m["baseline"]["auc"].get<double>());
  EXPECT_LT(std::abs(m["change"]["auc"].get<double>()), 0.01) << m.dump();

  // quantize without --dtype: the declared type, the others INT8.
  const std::string mixed = t.dir + "/declared.pt";
  r = run_recmod("quantize " + kDemo + " " + int4 + " --checkpoint " + t.model + " --out " + mixed + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = last_json(r);
  EXPECT_EQ(report["tables"][0]["type"], "INT4");
  EXPECT_EQ(report["tables"][1]["type"], "INT8");
  // Its rows against a config that declares another type: refused, naming both.
  r = run_recmod("eval " + kDemo + " --set 'nodes.sparse_arch.tables[0].data_type=int8' --checkpoint " + mixed +
                 " --data " + t.eval);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("table 't_C1' of node 'sparse_arch' (dimension 8): the config says data_type INT8, "
                                  "the checkpoint holds INT4 rows"));

  // profile of the quantized checkpoint: forward passes, the tables' bytes.
  const std::string json = t.dir + "/profile_q.json";
  r = run_recmod("profile " + kDemo + " --checkpoint " + mixed + " --data " + t.eval +
                 " --steps 2 --warmup 1 --batch-size 100 --trace '' --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("inference (forward only, no grad), batch 100, 2 timed steps"));
  std::ifstream in(json);
  const auto p = nlohmann::json::parse(in);
  EXPECT_EQ(p["mode"], "inference");
  EXPECT_EQ(p["memory"][0]["name"], "sparse_arch.embedding_bags.t_C1.weight");
  EXPECT_EQ(p["memory"][0]["parameter_bytes"].get<int64_t>(), 2000 * (4 + 4));  // INT4: 4 bytes of codes + fp16 scale, bias
  EXPECT_EQ(p["memory"][1]["parameter_bytes"].get<int64_t>(), 2000 * (8 + 8));  // INT8
}

TEST(QuantizeCliTest, AQuantizedCheckpointIsNotTrainedFrom) {
  const Trained& t = trained();
  const std::string int8 = t.dir + "/int8_for_training.pt";
  ASSERT_EQ(run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + int8).exit_code, 0);
  auto r = run_recmod("train " + kDemo + " --data " + t.train + " --out " + t.dir + "/warm --steps 2 --init-from " + int8);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("it holds quantized tables (recmod quantize), which are for evaluation only"));
}

TEST(QuantizeCliTest, TheQuantizedCheckpointLoadsInPythonTorch) {
  const Trained& t = trained();
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  const std::string int8 = t.dir + "/int8_py.pt";
  ASSERT_EQ(run_recmod("quantize " + kDemo + " --checkpoint " + t.model + " --out " + int8).exit_code, 0);
  auto r = run_command(
      "/usr/bin/python3 -c \"import torch; s = torch.load('" + int8 +
      "', weights_only=True); w = s['sparse_arch.embedding_bags.t_C1.weight']; q = s['sparse_arch.embedding_bags.t_C1.weight_qscale']; "
      "print(w.dtype, tuple(w.shape), q.dtype, tuple(q.shape))\" 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("torch.uint8 (2000, 8) torch.float32 (2000, 1)"));
}

}  // namespace quantize_cli_test
}  // namespace recmod::testing
