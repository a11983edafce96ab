#include "recmod/train/quantized_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/quant/embedding_modules.h"
#include "support/test_util.h"

namespace recmod::train {
namespace quantized_model_test {

using ::testing::HasSubstr;

const char* kYaml = R"(features:
  dense: {count: 2}
  sparse: [C1, C2]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 40, embedding_dim: 8, feature_names: [C1]}
      - {name: t2, num_embeddings: 30, embedding_dim: 8, feature_names: [C2]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [8]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
)";

config::ModelGraph build() {
  torch::manual_seed(0);
  const auto spec = config::parse_model_config(config::ConfigNode::load_string(kYaml, "q.yaml"));
  return config::ModelGraph(static_cast<const config::ModelSpec&>(spec));
}

data::Batch batch() {
  torch::manual_seed(5);
  data::Batch b;
  b.dense = torch::randn({6, 2});
  const torch::Tensor lengths = torch::randint(0, 4, {12}, torch::kLong);
  b.sparse = KeyedJaggedTensor::from_lengths({"C1", "C2"}, torch::randint(0, 30, {lengths.sum().item<int64_t>()}),
                                             lengths);
  b.labels = torch::zeros({6, 1});
  return b;
}

torch::Tensor logits(config::ModelGraph& model) {
  torch::NoGradGuard no_grad;
  model->eval();
  return model->forward(batch());
}

TEST(QuantizedModel, QuantizeReportsEveryTableAndAReopenedCheckpointGivesTheSameLogits) {
  auto model = build();
  const torch::Tensor before = logits(model);
  quant::QuantConfig config;
  config.per_table_weight_dtype["t2"] = torch::kQUInt4x2;
  const auto reports = quantize_model(model, config);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].node, "sparse_arch");
  EXPECT_EQ(reports[0].type, DataType::INT8);
  EXPECT_EQ(reports[0].bytes_before, 40 * 8 * 4);
  EXPECT_EQ(reports[0].bytes_after, 40 * (8 + 8));
  EXPECT_EQ(reports[1].type, DataType::INT4);
  EXPECT_EQ(reports[1].bytes_after, 30 * (4 + 4));
  EXPECT_GT(reports[1].max_abs_error, reports[0].max_abs_error);
  const torch::Tensor quantized = logits(model);
  EXPECT_TRUE(torch::allclose(quantized, before, 0, 0.05));

  const StateDict saved = state_dict(*model);
  EXPECT_TRUE(has_quantized_tables(saved));
  EXPECT_FALSE(has_quantized_tables(state_dict(*build())));
  auto reopened = build();
  use_quantized_tables(reopened, saved, "q.pt");
  load_model_state(reopened, saved, "q.pt");
  EXPECT_TRUE(torch::equal(logits(reopened), quantized));
  auto q = std::dynamic_pointer_cast<quant::EmbeddingBagCollectionImpl>(reopened->node_module(0));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->embedding_bag_configs()[1].data_type, DataType::INT4);
}

TEST(QuantizedModel, ErrorsNameTheTable) {
  auto model = build();
  quant::QuantConfig config;
  config.per_table_weight_dtype["t9"] = torch::kQUInt4x2;
  EXPECT_THAT(test::error_of<InputError>([&] { quantize_model(model, config); }),
              HasSubstr("no EmbeddingBagCollection or EmbeddingCollection has a table 't9'; the tables are [t1, t2]"));
  config.per_table_weight_dtype.clear();
  quantize_model(model, config);
  StateDict saved = state_dict(*model);
  for (auto& [key, value] : saved)
    if (key == "sparse_arch.embedding_bags.t2.weight_qscale") value = value.to(torch::kHalf);
  for (auto& [key, value] : saved)
    if (key == "sparse_arch.embedding_bags.t2.weight") value = value.narrow(1, 0, 3).contiguous();
  auto reopened = build();
  EXPECT_THAT(test::error_of<CheckpointError>([&] { use_quantized_tables(reopened, saved, "q.pt"); }),
              HasSubstr("q.pt: table 't2' of node 'sparse_arch' (dimension 8): 3 bytes of codes per row with a Half "
                        "scale fit no type for dimension 8"));
}

// The config's own data types: t1 int8, t2 int4 in the EBC, the EC's s1 int8
// and s2 fp32; the second EBC (all fp32) is left float.
const char* kTypedYaml = R"(features:
  dense: {count: 2}
  sparse: [C1, C2, C3]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 40, embedding_dim: 8, feature_names: [C1], data_type: int8}
      - {name: t2, num_embeddings: 30, embedding_dim: 8, feature_names: [C2], data_type: INT4}
  plain: {type: EmbeddingBagCollection, input: features.sparse, tables: [{name: p1, num_embeddings: 30, embedding_dim: 8, feature_names: [C3]}]}
  seq:
    type: EmbeddingCollection
    input: features.sparse
    tables:
      - {name: s1, num_embeddings: 40, embedding_dim: 8, feature_names: [C1], data_type: int8}
      - {name: s2, num_embeddings: 30, embedding_dim: 8, feature_names: [C3]}
  pooled: {type: SequencePool, input: seq}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [8]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch, plain, pooled]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
)";

config::ModelGraph build_typed() {
  torch::manual_seed(0);
  const auto spec = config::parse_model_config(config::ConfigNode::load_string(kTypedYaml, "typed.yaml"));
  return config::ModelGraph(static_cast<const config::ModelSpec&>(spec));
}

data::Batch typed_batch() {
  data::Batch b = batch();
  const torch::Tensor lengths = torch::randint(0, 4, {18}, torch::kLong);
  b.sparse = KeyedJaggedTensor::from_lengths({"C1", "C2", "C3"},
                                             torch::randint(0, 30, {lengths.sum().item<int64_t>()}), lengths);
  return b;
}

torch::Tensor typed_logits(config::ModelGraph& model) {
  torch::NoGradGuard no_grad;
  model->eval();
  return model->forward(typed_batch());
}

TEST(QuantizedModel, ConfigDataTypesQuantizeTheirCollectionsCloseToTheFloatModel) {
  auto model = build_typed();
  // Int tables train in float32 (quantized only for inference).
  EXPECT_EQ(state_dict(*model)[0].second.scalar_type(), torch::kFloat);
  const torch::Tensor before = typed_logits(model);
  const auto reports = quantize_as_configured(model);
  ASSERT_EQ(reports.size(), 4u);  // sparse_arch's two tables and seq's two; `plain` is untouched
  EXPECT_EQ(reports[0].table, "t1");
  EXPECT_EQ(reports[0].type, DataType::INT8);
  EXPECT_EQ(reports[1].type, DataType::INT4);
  EXPECT_EQ(reports[2].node, "seq");
  EXPECT_EQ(reports[2].type, DataType::INT8);
  EXPECT_EQ(reports[3].type, DataType::FP32);
  EXPECT_EQ(reports[3].max_abs_error, 0.0);
  EXPECT_NE(std::dynamic_pointer_cast<quant::EmbeddingBagCollectionImpl>(model->node_module(0)), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(model->node_module(1)), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<quant::EmbeddingCollectionImpl>(model->node_module(2)), nullptr);
  // Weights are uniform in +-sqrt(1/N) <= 0.183: an INT4 step is at most 0.025.
  const torch::Tensor after = typed_logits(model);
  EXPECT_FALSE(torch::equal(after, before));
  EXPECT_TRUE(torch::allclose(after, before, 0, 0.02)) << (after - before).abs().max();

  // Saved and reopened: the checkpoint's types agree with the config's.
  const StateDict saved = state_dict(*model);
  auto reopened = build_typed();
  use_quantized_tables(reopened, saved, "typed.pt");
  load_model_state(reopened, saved, "typed.pt");
  EXPECT_TRUE(torch::equal(typed_logits(reopened), after));
  EXPECT_TRUE(quantize_as_configured(reopened).empty());  // nothing left to quantize

  // A checkpoint whose rows are not the config's type is refused, naming both.
  auto other = build_typed();
  quant::QuantConfig int8;
  auto float_model = build_typed();
  quantize_model(float_model, int8);  // every table INT8, t2 included
  EXPECT_THAT(test::error_of<CheckpointError>([&] { use_quantized_tables(other, state_dict(*float_model), "i8.pt"); }),
              HasSubstr("i8.pt: table 't2' of node 'sparse_arch' (dimension 8): the config says data_type INT4, the "
                        "checkpoint holds INT8 rows"));
  // What `recmod quantize` uses without --dtype: the config's int types, the rest the fallback.
  const auto qc = configured_quant_config(build_typed(), torch::kHalf);
  EXPECT_EQ(qc.data_type_of("t2"), DataType::INT4);
  EXPECT_EQ(qc.data_type_of("s1"), DataType::INT8);
  EXPECT_EQ(qc.data_type_of("p1"), DataType::FP16);
}

}  // namespace quantized_model_test
}  // namespace recmod::train
