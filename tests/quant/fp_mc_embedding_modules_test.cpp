// Quantized FeatureProcessedEmbeddingBagCollection and managed-collision
// collections (quant/fp_embedding_modules.h, quant/mc_embedding_modules.h),
// made by quantize_model from a config's nodes as `recmod quantize` does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/config_node.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/modules/fp_embedding_modules.h"
#include "recmod/quant/fp_embedding_modules.h"
#include "recmod/quant/mc_embedding_modules.h"
#include "recmod/train/quantized_model.h"

namespace recmod::quant {
namespace fp_mc_embedding_modules_test {

using ::testing::HasSubstr;

// Node 0: FP-EBC (position weights on a), 1: MC-EBC, 2: MC-EC.
const char* kYaml = R"(features:
  dense: {count: 1}
  sparse: [a, b, c, d]
nodes:
  fp:
    type: FeatureProcessedEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 30, embedding_dim: 16, feature_names: [a]}
      - {name: t_b, num_embeddings: 20, embedding_dim: 12, feature_names: [b]}
    feature_processors: {a: {max_feature_length: 4}}
  mcb:
    type: ManagedCollisionEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: m_c, num_embeddings: 24, embedding_dim: 16, feature_names: [c],
         managed_collision: {zch_size: 16, mch_size: 8, mch_hash_func: murmur3, eviction: lru}}
  mce:
    type: ManagedCollisionEmbeddingCollection
    input: features.sparse
    tables:
      - {name: m_d, num_embeddings: 20, embedding_dim: 8, feature_names: [d],
         managed_collision: {zch_size: 20, eviction: lru}}
  pooled: {type: SequencePool, input: mce}
  x: {type: Concat, inputs: [features.dense, fp, mcb, pooled]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
)";

config::ModelGraph build() {
  torch::manual_seed(0);
  const auto spec = config::parse_model_config(config::ConfigNode::load_string(kYaml, "q.yaml"));
  return config::ModelGraph(static_cast<const config::ModelSpec&>(spec));
}

KeyedJaggedTensor features(int64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor lengths = torch::randint(0, 5, {4 * 6}, torch::kLong);
  return KeyedJaggedTensor::from_lengths(
      {"a", "b", "c", "d"}, torch::randint(0, 1000, {lengths.sum().item<int64_t>()}, torch::kLong) % 20, lengths);
}

/// A model whose position weights are not all one and whose MC modules
/// have seen ids (a few training-mode forwards), so both matter.
config::ModelGraph trained_like() {
  auto model = build();
  torch::NoGradGuard no_grad;
  for (auto& [key, value] : state_dict(*model))
    if (key.find("position_weight") != std::string::npos) torch::Tensor(value).uniform_(0.5, 2.0);
  model->train();
  for (int64_t s = 0; s < 3; ++s) {
    data::Batch b;
    b.dense = torch::randn({6, 1});
    b.sparse = features(10 + s);
    model->forward(b);
  }
  model->eval();
  return model;
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = std::max(want.abs().max().item<double>(), 1e-6);
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-5 * scale) << what;
}

// Each node quantized to INT8 / INT4 / INT2 pools (and looks up) what the
// float node gives on its dequantized tables, within 1e-5 relative, with
// TorchRec's quantized keys.
TEST(QuantFpMcCollections, MatchTheFloatNodesOnDequantizedTablesWithTorchRecsKeys) {
  for (auto dtype : {torch::kQInt8, torch::kQUInt4x2, torch::kQUInt2x4}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto quantized = trained_like();
    auto reference = build();
    load_state_dict(*reference, state_dict(*quantized), "model");  // the same tables, weights and MC state
    reference->eval();
    QuantConfig config;
    config.weight = dtype;
    const auto reports = train::quantize_model(quantized, config);
    ASSERT_EQ(reports.size(), 4u);
    EXPECT_EQ(reports[0].node, "fp");
    EXPECT_EQ(reports[2].node, "mcb");
    EXPECT_EQ(reports[3].node, "mce");
    for (const auto& r : reports) EXPECT_LT(r.bytes_after, r.bytes_before) << r.table;

    auto qfp = std::dynamic_pointer_cast<FeatureProcessedEmbeddingBagCollectionImpl>(quantized->node_module(0));
    auto qmb = std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(quantized->node_module(1));
    auto qme = std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(quantized->node_module(2));
    ASSERT_TRUE(qfp && qmb && qme);
    auto fp = std::dynamic_pointer_cast<recmod::FeatureProcessedEmbeddingBagCollectionImpl>(reference->node_module(0));
    auto mcb = std::dynamic_pointer_cast<recmod::ManagedCollisionEmbeddingBagCollectionImpl>(reference->node_module(1));
    auto mce = std::dynamic_pointer_cast<recmod::ManagedCollisionEmbeddingCollectionImpl>(reference->node_module(2));
    ASSERT_TRUE(fp && mcb && mce);
    {  // the reference's tables become the quantized rows, dequantized
      torch::NoGradGuard no_grad;
      for (size_t t = 0; t < 2; ++t)
        torch::Tensor(fp->embedding_bag_collection()->table_weight(
                          qfp->embedding_bag_collection().embedding_bag_configs()[t].name))
            .copy_(qfp->embedding_bag_collection().dequantized_weight(t));
      torch::Tensor(mcb->embedding_bag_collection()->table_weight("m_c"))
          .copy_(qmb->embedding_bag_collection().dequantized_weight(0));
      torch::Tensor(mce->embedding_collection()->table_weight("m_d"))
          .copy_(qme->embedding_collection().table(0).dequantized());
    }
    torch::NoGradGuard no_grad;
    for (int64_t s = 0; s < 3; ++s) {
      const KeyedJaggedTensor in = features(20 + s);
      expect_close(qfp->forward(in).values(), fp->forward(in).values(), "fp");
      expect_close(qmb->forward(in).first.values(), mcb->forward(in).first.values(), "mcb");
      const auto got = qme->forward(in).first;
      const auto want = mce->forward(in).first;
      ASSERT_EQ(got.size(), want.size());
      for (size_t k = 0; k < got.size(); ++k) expect_close(got[k].second.values(), want[k].second.values(), "mce");
    }
    {  // The position weights matter: with them at one, the FP-EBC pools otherwise.
      torch::Tensor position = *find_tensor(state_dict(*qfp), "feature_processor.a.position_weight");
      const torch::Tensor kept = position.clone();
      const torch::Tensor weighted = qfp->forward(features(20)).values();
      position.fill_(1.0);
      EXPECT_FALSE(torch::allclose(qfp->forward(features(20)).values(), weighted));
      position.copy_(kept);
    }

    // TorchRec's quantized keys: tables at the node's top level, the
    // processors / MCC beside them.
    const StateDict saved = state_dict(*quantized);
    for (const char* key :
         {"fp.embedding_bags.t_a.weight", "fp.feature_processor.a.position_weight", "mcb.embedding_bags.m_c.weight",
          "mcb._managed_collision_collection._managed_collision_modules.m_c._mch_sorted_raw_ids",
          "mce.embeddings.m_d.weight", "mce.embeddings.m_d.weight_qscale"})
      EXPECT_NE(find_tensor(saved, key), nullptr) << key;
    EXPECT_EQ(find_tensor(saved, "fp.embedding_bags.t_a.weight")->scalar_type(), torch::kUInt8);
    for (const auto& [key, _] : saved) {
      EXPECT_EQ(key.find("_embedding_bag_collection"), std::string::npos) << key;
      EXPECT_EQ(key.find("_embedding_module"), std::string::npos) << key;
    }

    // Reopened from the checkpoint (types read from its keys): the same logits.
    data::Batch b;
    b.dense = torch::randn({6, 1});
    b.sparse = features(30);
    const torch::Tensor logits = quantized->forward(b);
    EXPECT_TRUE(train::has_quantized_tables(saved));
    auto reopened = build();
    train::use_quantized_tables(reopened, saved, "q.pt");
    train::load_model_state(reopened, saved, "q.pt");
    reopened->eval();
    EXPECT_TRUE(torch::equal(reopened->forward(b), logits));
  }
}

TEST(QuantFpMcCollections, ACheckpointThatDoesNotFitNamesTheTableAndNode) {
  auto model = trained_like();
  QuantConfig config;
  config.weight = torch::kQUInt4x2;
  train::quantize_model(model, config);
  StateDict saved = state_dict(*model);
  for (auto& [key, value] : saved)
    if (key == "mcb.embedding_bags.m_c.weight") value = value.narrow(1, 0, 5);  // neither INT4 (8) nor INT8 (16) wide
  auto reopened = build();
  try {
    train::use_quantized_tables(reopened, saved, "q.pt");
    train::load_model_state(reopened, saved, "q.pt");
    FAIL() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_THAT(e.what(), HasSubstr("m_c"));
    EXPECT_THAT(e.what(), HasSubstr("mcb"));
  }
}

}  // namespace fp_mc_embedding_modules_test
}  // namespace recmod::quant
