// recmod quantize + eval end to end on a model whose tables sit in a
// FeatureProcessedEmbeddingBagCollection, a ManagedCollisionEmbeddingBagCollection
// and a ManagedCollisionEmbeddingCollection (TorchRec's quantized FP and MC
// collections; docs/quantization.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <string>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace quantize_fp_mc_cli_test {

using ::testing::HasSubstr;

const char* kYaml = R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3, C4]
  hash: mod
  range: 60
nodes:
  fp_arch:
    type: FeatureProcessedEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_fp, num_embeddings: 60, embedding_dim: 8, feature_names: [C1]}
    feature_processors: {C1: {max_feature_length: 4}}
  mcb_arch:
    type: ManagedCollisionEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_mcb, num_embeddings: 40, embedding_dim: 8, feature_names: [C2],
         managed_collision: {zch_size: 40, eviction_interval: 4, input_hash_size: 60, eviction: lru}}
  mce_arch:
    type: ManagedCollisionEmbeddingCollection
    input: features.sparse
    tables:
      - {name: t_mce, num_embeddings: 40, embedding_dim: 8, feature_names: [C3, C4],
         managed_collision: {zch_size: 40, eviction_interval: 4, input_hash_size: 60, eviction: lfu}}
  seq_pool: {type: SequencePool, input: mce_arch}
  x0: {type: Concat, inputs: [features.dense, fp_arch, mcb_arch, seq_pool]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 64
  epochs: 2
  seed: 3
)";

nlohmann::json last_json(const RunResult& r) {
  return nlohmann::json::parse(r.output.substr(r.output.rfind("\n{") + 1));
}

TEST(QuantizeFpMcCliTest, FeatureProcessedAndManagedCollisionTablesQuantizeAndEvaluate) {
  const std::string dir = fresh_dir("quantize_fp_mc");
  const std::string config = write_file(dir + "/model.yaml", kYaml);
  const std::string train = dir + "/train.rmb", eval = dir + "/eval.rmb";
  write_synthetic(train, "--rows 2000 --dense 3 --sparse 4 --cardinality 60 --seed 2");
  write_synthetic(eval, "--rows 1000 --skip 2000 --dense 3 --sparse 4 --cardinality 60 --seed 2");
  auto r = run_recmod("train " + config + " --data " + train + " --out " + dir + "/run --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string model = dir + "/run/model.pt";

  for (const std::string dtype : {"int8", "int4", "int2"}) {
    SCOPED_TRACE(dtype);
    const std::string out = dir + "/" + dtype + ".pt";
    r = run_recmod("quantize " + config + " --checkpoint " + model + " --out " + out + " --dtype " + dtype + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto report = last_json(r);
    ASSERT_EQ(report["tables"].size(), 3u) << report.dump();
    EXPECT_EQ(report["tables"][0]["table"], "t_fp");
    EXPECT_EQ(report["tables"][1]["table"], "t_mcb");
    EXPECT_EQ(report["tables"][2]["table"], "t_mce");
    for (const auto& t : report["tables"]) {
      EXPECT_LT(t["bytes_after"].get<int64_t>(), t["bytes_before"].get<int64_t>()) << t.dump();
      EXPECT_GT(t["max_abs_error"].get<double>(), 0.0) << t.dump();
    }
    r = run_recmod("eval " + config + " --checkpoint " + out + " --data " + eval + " --json --baseline " + model);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto m = last_json(r);
    EXPECT_EQ(m["count"].get<int64_t>(), 1000);
    // Evaluated quantized (not the float model again), and close to it.
    EXPECT_NE(m["log_loss"].get<double>(), m["baseline"]["log_loss"].get<double>()) << m.dump();
    EXPECT_LT(std::abs(m["change"]["auc"].get<double>()), dtype == "int2" ? 0.05 : 0.01) << m.dump();
  }
  // torch.load reads the quantized FP and MC nodes' tables under TorchRec's
  // quantized keys (packed uint8 rows, fp32 scale and bias for INT8).
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
    r = run_command("/usr/bin/python3 -c \"import torch; s = torch.load('" + dir +
                    "/int8.pt', weights_only=True); "
                    "print(*[(k, str(s[k].dtype), tuple(s[k].shape)) for k in ["
                    "'fp_arch.embedding_bags.t_fp.weight', 'fp_arch.embedding_bags.t_fp.weight_qscale', "
                    "'mcb_arch.embedding_bags.t_mcb.weight_qbias', 'mce_arch.embeddings.t_mce.weight']])\" 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("('fp_arch.embedding_bags.t_fp.weight', 'torch.uint8', (60, 8))"));
    EXPECT_THAT(r.output, HasSubstr("('fp_arch.embedding_bags.t_fp.weight_qscale', 'torch.float32', (60, 1))"));
    EXPECT_THAT(r.output, HasSubstr("('mcb_arch.embedding_bags.t_mcb.weight_qbias', 'torch.float32', (40, 1))"));
    EXPECT_THAT(r.output, HasSubstr("('mce_arch.embeddings.t_mce.weight', 'torch.uint8', (40, 8))"));
  }
  // A config may declare the types of these nodes' tables: quantize without
  // --dtype gives t_mcb its INT4 (the others INT8), eval of the float
  // checkpoint quantizes it as declared, and a checkpoint of other types is
  // refused naming the table.
  std::string text = kYaml;
  const std::string mcb_table = "feature_names: [C2],";
  ASSERT_NE(text.find(mcb_table), std::string::npos);
  text.replace(text.find(mcb_table), mcb_table.size(), "feature_names: [C2], data_type: int4,");
  const std::string declared = write_file(dir + "/declared.yaml", text);
  r = run_recmod("quantize " + declared + " --checkpoint " + model + " --out " + dir + "/declared.pt --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto types = last_json(r)["tables"];
  EXPECT_EQ(types[0]["type"], "INT8");
  EXPECT_EQ(types[1]["type"], "INT4");
  EXPECT_EQ(types[2]["type"], "INT8");
  r = run_recmod("eval " + declared + " --checkpoint " + dir + "/declared.pt --data " + eval + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_recmod("eval " + config + " --checkpoint " + model + " --data " + eval + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double float_loss = last_json(r)["log_loss"].get<double>();
  r = run_recmod("eval " + declared + " --checkpoint " + model + " --data " + eval + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(last_json(r)["log_loss"].get<double>(), float_loss);
  r = run_recmod("eval " + declared + " --checkpoint " + dir + "/int8.pt --data " + eval);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("table 't_mcb' of node 'mcb_arch'"));
  EXPECT_THAT(r.output, HasSubstr("the config says data_type INT4, the checkpoint holds INT8 rows"));

  // The quantized checkpoint is not a float one to train from or to quantize again.
  r = run_recmod("quantize " + config + " --checkpoint " + dir + "/int8.pt --out " + dir + "/x.pt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("is already quantized"));
}

}  // namespace quantize_fp_mc_cli_test
}  // namespace recmod::testing
