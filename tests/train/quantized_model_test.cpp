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
namespace {

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
              HasSubstr("no EmbeddingBagCollection has a table 't9'; the tables are [t1, t2]"));
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

}  // namespace
}  // namespace recmod::train
