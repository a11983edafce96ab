// Tables' `data_type` in YAML (issues 15, 16): fp32 / fp16 / bf16 storage
// for training, int8 / int4 / int2 declared for inference.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"
#include "support/test_util.h"

namespace recmod::config {
namespace table_data_type_test {

using ::testing::HasSubstr;
using ::testing::Not;

ModelConfig parse(const std::string& yaml) { return parse_model_config(ConfigNode::load_string(yaml, "t.yaml")); }

std::string build_error(const std::string& yaml) {
  return test::error_of<ConfigError>([&] { ModelGraph graph(parse(yaml)); });
}

/// An EBC and an EC whose tables' data types are `a` (EBC, fused training
/// path) and `b` (EC, row-sparse optimizer).
std::string model(const std::string& a, const std::string& b, int64_t dim = 8,
                  const std::string& ebc_type = "EmbeddingBagCollection") {
  return R"(features:
  dense: {count: 2}
  sparse: [C1, C2]
nodes:
  bags:
    type: )" + ebc_type + R"(
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 50, embedding_dim: )" + std::to_string(dim) + R"(, feature_names: [C1], data_type: )" + a + R"(}
  seq:
    type: EmbeddingCollection
    input: features.sparse
    tables:
      - {name: s1, num_embeddings: 50, embedding_dim: 8, feature_names: [C2], data_type: )" + b + R"(}
  pooled: {type: SequencePool, input: seq}
  x: {type: Concat, inputs: [features.dense, bags, pooled]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
training:
  dense_optimizer: {type: sgd, lr: 0.1}
  embedding_optimizer: {type: adagrad, lr: 0.5}
  batch_size: 16
)";
}

data::Batch batch(int64_t seed) {
  torch::manual_seed(seed);
  data::Batch b;
  b.dense = torch::randn({16, 2});
  const torch::Tensor lengths = torch::randint(1, 3, {32}, torch::kLong);
  b.sparse = KeyedJaggedTensor::from_lengths({"C1", "C2"}, torch::randint(0, 50, {lengths.sum().item<int64_t>()}),
                                             lengths);
  b.labels = (b.dense.select(1, 0) > 0).to(torch::kFloat).unsqueeze(1);
  return b;
}

torch::Tensor weight_of(ModelGraph& graph, const std::string& key) {
  for (const auto& [k, v] : state_dict(*graph))
    if (k == key) return v;
  ADD_FAILURE() << "no key " << key;
  return {};
}

TEST(TableDataType, Bf16AndFp16TablesAreStoredSoAndTrainWithFloat32State) {
  const ModelConfig config = parse(model("bf16", "FP16"));
  torch::manual_seed(0);
  ModelGraph graph(static_cast<const ModelSpec&>(config));
  const torch::Tensor t1 = weight_of(graph, "bags.embedding_bags.t1.weight").clone();
  const torch::Tensor s1 = weight_of(graph, "seq.embeddings.s1.weight").clone();
  EXPECT_EQ(t1.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(s1.scalar_type(), torch::kHalf);

  train::TrainingSetup setup(graph, config.training, torch::kCPU);
  graph->train();
  const double first = train::train_step(graph, setup, batch(1)).item<double>();
  double last = first;
  for (int step = 0; step < 30; ++step) last = train::train_step(graph, setup, batch(1)).item<double>();
  EXPECT_LT(last, first);  // the same batch again: the loss goes down
  const torch::Tensor t1_after = weight_of(graph, "bags.embedding_bags.t1.weight");
  const torch::Tensor s1_after = weight_of(graph, "seq.embeddings.s1.weight");
  EXPECT_EQ(t1_after.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(s1_after.scalar_type(), torch::kHalf);
  EXPECT_FALSE(torch::equal(t1_after, t1));
  EXPECT_FALSE(torch::equal(s1_after, s1));
  // The optimizer's state stays float32 for both.
  int states = 0;
  for (const auto& [key, value] : setup.state_dict())
    if (key.find("t1") != std::string::npos || key.find("s1") != std::string::npos) {
      EXPECT_EQ(value.scalar_type(), torch::kFloat) << key;
      ++states;
    }
  EXPECT_EQ(states, 2);
}

TEST(TableDataType, IntTablesTrainInFloat32) {
  const ModelConfig config = parse(model("int4", "int8"));
  ModelGraph graph(static_cast<const ModelSpec&>(config));
  EXPECT_EQ(weight_of(graph, "bags.embedding_bags.t1.weight").scalar_type(), torch::kFloat);
  EXPECT_EQ(weight_of(graph, "seq.embeddings.s1.weight").scalar_type(), torch::kFloat);
  EXPECT_EQ(build_error(model("fp32", "int2")), "no error");
}

TEST(TableDataType, BadValuesAndPlacesAreConfigErrorsAtTheKey) {
  EXPECT_THAT(build_error(model("int3", "fp32")),
              HasSubstr("t.yaml:9:90: nodes.bags.tables[0].data_type: expected one of fp32, fp16, bf16, int8, int4, int2, found 'int3'"));
  EXPECT_THAT(build_error(model("int4", "fp32", 1)),
              HasSubstr("a table of embedding_dim 1 cannot be int4 (its rows would read back as a wider type); use int8"));
  // Feature-processed and managed-collision collections take them too
  // (quantized by eval as declared: QuantizeFpMcCliTest).
  // (This YAML lacks the node's feature_processors, the next thing checked.)
  const std::string fp_error = build_error(model("int8", "fp32", 8, "FeatureProcessedEmbeddingBagCollection"));
  EXPECT_THAT(fp_error, HasSubstr("missing required field 'feature_processors'"));
  EXPECT_THAT(fp_error, Not(HasSubstr("data_type")));
}

TEST(TableDataType, StochasticRoundingReachesTheFusedUpdateAndOnlyForFp16Bf16) {
  // The same model and batches, bf16 tables rounded to nearest or
  // stochastically: the key reaches the fused EBC's update (the row-sparse
  // optimizer's: TrainerTest.StochasticRoundingResumesBitwiseOnBothEmbeddingPaths).
  std::vector<torch::Tensor> trained;
  for (const std::string t1 : {"bf16", "bf16, stochastic_rounding: false", "bf16, stochastic_rounding: true"}) {
    const ModelConfig config = parse(model(t1, "fp32"));
    torch::manual_seed(0);
    ModelGraph graph(static_cast<const ModelSpec&>(config));
    train::TrainingSetup setup(graph, config.training, torch::kCPU);
    graph->train();
    for (int step = 0; step < 5; ++step) train::train_step(graph, setup, batch(1 + step));
    trained.push_back(weight_of(graph, "bags.embedding_bags.t1.weight").clone());
  }
  EXPECT_TRUE(torch::equal(trained[0], trained[1]));
  EXPECT_FALSE(torch::equal(trained[0], trained[2]));
  EXPECT_EQ(build_error(model("fp16, stochastic_rounding: true", "fp32")), "no error");
  EXPECT_THAT(build_error(model("fp32, stochastic_rounding: true", "fp32")),
              HasSubstr("t.yaml:9:117: nodes.bags.tables[0].stochastic_rounding: stochastic_rounding is for tables "
                        "of data_type fp16 or bf16; this table is fp32"));
  EXPECT_THAT(build_error(model("bf16, stochastic_rounding: 3", "fp32")), HasSubstr("stochastic_rounding"));
}

}  // namespace table_data_type_test
}  // namespace recmod::config
